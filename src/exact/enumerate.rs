//! Exact sums over binary states.

use crate::energy::{Energy, Rbm, StateSpace, sigmoid, sum_softplus};
use crate::error::{Error, Result};
use ndarray::Array2;
use rayon::prelude::*;

/// States per parallel block of a Gray-code walk (fixed: results do not
/// depend on the thread count).
const GRAY_BLOCK: u64 = 1 << 12;

/// Largest layer size summed over exactly.
pub const MAX_ENUMERATED_BITS: usize = 30;

/// Running log-sum-exp: `(max, sum of exp(x - max))`.
#[derive(Clone, Copy)]
struct Lse(f64, f64);
impl Lse {
    fn new() -> Self {
        Lse(f64::NEG_INFINITY, 0.0)
    }
    fn add(&mut self, x: f64) {
        if x <= self.0 {
            self.1 += (x - self.0).exp();
        } else {
            self.1 = self.1 * (self.0 - x).exp() + 1.0;
            self.0 = x;
        }
    }
    fn merge(self, o: Lse) -> Lse {
        if o.0 == f64::NEG_INFINITY {
            return self;
        }
        if self.0 == f64::NEG_INFINITY {
            return o;
        }
        let m = self.0.max(o.0);
        Lse(m, self.1 * (self.0 - m).exp() + o.1 * (o.0 - m).exp())
    }
    fn value(self) -> f64 {
        self.0 + self.1.ln()
    }
}

/// Walks all `2^k` binary vectors in Gray-code order, in parallel blocks.
/// For each block, `init(bits)` builds a state from the block's first
/// vector, `flip(state, j)` flips bit `j`, and `visit(state, acc)` adds to
/// the block's accumulator. The accumulators are returned in block order.
fn gray_walk<S, A, I, F, V>(k: usize, init: I, flip: F, visit: V, zero: A) -> Vec<A>
where
    S: Send,
    A: Send + Clone + Sync,
    I: Fn(u64) -> S + Sync,
    F: Fn(&mut S, usize) + Sync,
    V: Fn(&S, &mut A) + Sync,
{
    let total: u64 = 1u64 << k;
    let blocks = total.div_ceil(GRAY_BLOCK);
    (0..blocks)
        .into_par_iter()
        .map(|b| {
            let start = b * GRAY_BLOCK;
            let end = (start + GRAY_BLOCK).min(total);
            let mut st = init(start ^ (start >> 1));
            let mut acc = zero.clone();
            visit(&st, &mut acc);
            for i in start + 1..end {
                flip(&mut st, i.trailing_zeros() as usize);
                visit(&st, &mut acc);
            }
            acc
        })
        .collect()
}

/// A hidden configuration with its visible activations `b + W h` and `c.h`,
/// updated in O(V) when one hidden bit flips.
struct HiddenState {
    act: Vec<f64>,
    ch: f64,
    bits: u64,
}

impl HiddenState {
    fn new(rbm: &Rbm, bits: u64) -> Self {
        let mut st = HiddenState {
            act: rbm.visible_bias().to_vec(),
            ch: 0.0,
            bits: 0,
        };
        for j in 0..rbm.n_hidden() {
            if bits >> j & 1 == 1 {
                st.flip(rbm, j);
            }
        }
        st
    }
    fn flip(&mut self, rbm: &Rbm, j: usize) {
        let sign = if self.bits >> j & 1 == 0 { 1.0 } else { -1.0 };
        self.bits ^= 1 << j;
        self.ch += sign * rbm.hidden_bias()[j];
        for (a, w) in self.act.iter_mut().zip(rbm.weights().column(j)) {
            *a += sign * w;
        }
    }
    /// `log p*(h) = c.h + sum_i softplus(b_i + (W h)_i)`.
    fn log_weight(&self) -> f64 {
        self.ch + sum_softplus(self.act.iter().copied())
    }
}

/// Exact `log Z = log sum_v exp(-F(v))` of an RBM by summing over its
/// smaller layer: over hidden states,
/// `Z = sum_h exp(c.h) prod_i (1 + exp(b_i + (W h)_i))`, or over visible
/// states with the free energy. The layer must have at most
/// [`MAX_ENUMERATED_BITS`] units. `rbm20` (20 hidden) takes about a second.
pub fn rbm_log_z(rbm: &Rbm) -> Result<f64> {
    let (v, h) = (rbm.n_visible(), rbm.n_hidden());
    if h.min(v) > MAX_ENUMERATED_BITS {
        return Err(Error::param(
            "enumeration",
            format!(
                "the smaller RBM layer has {} units; at most {MAX_ENUMERATED_BITS} can be summed over",
                h.min(v)
            ),
        ));
    }
    if v < h {
        return enumerate_log_z(rbm);
    }
    let parts = gray_walk(
        h,
        |bits| HiddenState::new(rbm, bits),
        |st, j| st.flip(rbm, j),
        |st, acc: &mut Lse| acc.add(st.log_weight()),
        Lse::new(),
    );
    Ok(parts.into_iter().fold(Lse::new(), Lse::merge).value())
}

/// Exact `log Z = log sum_y exp(-F(y))` of a binary energy over all `2^d`
/// states (d <= 24), evaluated in batches of 4096 states through the energy core.
pub fn enumerate_log_z(energy: &dyn Energy) -> Result<f64> {
    let d = energy.dim();
    if energy.space() != StateSpace::Binary {
        return Err(Error::param(
            "enumeration",
            "needs a model with binary states",
        ));
    }
    if d > 24 {
        return Err(Error::param(
            "enumeration",
            format!("2^{d} states are too many (at most 2^24)"),
        ));
    }
    let total = 1usize << d;
    let block = 4096.min(total);
    let mut acc = Lse::new();
    let mut start = 0;
    while start < total {
        let n = block.min(total - start);
        let y = Array2::from_shape_fn((n, d), |(r, j)| ((start + r) >> j & 1) as f64);
        let e = crate::energy::evaluate(energy, y.view())?;
        for x in e.iter() {
            acc.add(-x);
        }
        start += n;
    }
    Ok(acc.value())
}

/// The exact distribution of the number of active visible units,
/// `P(sum_i v_i = k)` for `k = 0..=V`, of an RBM with at most 24 hidden
/// units: a sum over hidden states of `P(h)` times the Poisson-binomial
/// law of `sum_i v_i` given `h`. Used to test Gibbs samplers.
pub fn rbm_visible_marginal_counts(rbm: &Rbm) -> Result<Vec<f64>> {
    let (v, h) = (rbm.n_visible(), rbm.n_hidden());
    if h > 24 {
        return Err(Error::param(
            "enumeration",
            format!("{h} hidden units: at most 24"),
        ));
    }
    let log_z = rbm_log_z(rbm)?;
    let visit = |st: &HiddenState, acc: &mut Vec<f64>| {
        let p_h = (st.log_weight() - log_z).exp();
        let mut dist = vec![0.0; v + 1];
        dist[0] = 1.0;
        for (i, &a) in st.act.iter().enumerate() {
            let p = sigmoid(a);
            for k in (1..=i + 1).rev() {
                dist[k] = dist[k] * (1.0 - p) + dist[k - 1] * p;
            }
            dist[0] *= 1.0 - p;
        }
        for (a, d) in acc.iter_mut().zip(&dist) {
            *a += p_h * d;
        }
    };
    let parts = gray_walk(
        h,
        |bits| HiddenState::new(rbm, bits),
        |st, j| st.flip(rbm, j),
        visit,
        vec![0.0; v + 1],
    );
    let mut out = vec![0.0; v + 1];
    for p in parts {
        for (o, x) in out.iter_mut().zip(p) {
            *o += x;
        }
    }
    Ok(out)
}
