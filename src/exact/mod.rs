//! Exact references: enumeration for binary models, quadrature for low
//! dimensions. They are the answers the statistical tests and the AIS
//! estimates are checked against.

mod enumerate;
mod quadrature;

pub use enumerate::{MAX_ENUMERATED_BITS, enumerate_log_z, rbm_log_z, rbm_visible_marginal_counts};
pub use quadrature::{log_integrate_1d, log_z_grid, log_z_grid_with_error};
