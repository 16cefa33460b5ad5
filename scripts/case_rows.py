"""The rows of a measurement script (one JSON line per run, grouped by
case), shared by calibrate_warnings.py and w8_logz.py: the command line
`[SEEDS] [OUT_DIR] [--only TEXT]`, and a file of rows that `--only TEXT`
rewrites for the cases whose name contains TEXT, keeping the others'
rows. Rows go to a temporary file beside it (flushed per row) that
replaces it at the end, so a run stopped half way loses no kept row.
Standard library only."""
import json
import os


def parse_args(argv, default_seeds, default_out):
    """(seeds, out_dir, only) from `[SEEDS] [OUT_DIR] [--only TEXT]`."""
    argv = list(argv)
    only = None
    if "--only" in argv:
        i = argv.index("--only")
        only = argv[i + 1]
        del argv[i:i + 2]
    seeds = int(argv[0]) if len(argv) > 0 else default_seeds
    out_dir = argv[1] if len(argv) > 1 else default_out
    os.makedirs(out_dir, exist_ok=True)
    return seeds, out_dir, only


class CaseRows:
    """The rows of one run into `path` (see the module docs)."""

    def __init__(self, path, only):
        self.path, self.only, self.rows, self.kept = path, only, [], []
        if only is not None:
            with open(path) as f:
                self.kept = [json.loads(line) for line in f]
        self.tmp = path + ".tmp"
        self.f = open(self.tmp, "w")

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        return False

    def run(self, case):
        """Whether `case` runs again; if not, its kept rows are added."""
        if self.only is None or self.only in case:
            return True
        for row in self.kept:
            if row["case"] == case:
                self.add(row)
        return False

    def add(self, row):
        self.rows.append(row)
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()
