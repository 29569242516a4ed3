"""The study: real-minority counts x methods x ratios x seeds -> results.csv, summary, report.

    python -m keras_ganaug.study --help

    grid.py      the method grammar, the settings (StudyConfig), the cells, shards
    records.py   what a study writes to OUT and reads back (cells, results.csv, study.json);
                 the results row's layout, its one owner
    adapters.py  the one place the classifier and GAN runs are called
    features.py  GAN quality in the study's self-supervised feature space
    runner.py    checks, cells, leakage: run_study
    summary.py   per-arm estimates and the declared comparisons (bootstrap, Holm)
    tables.py    the report's markdown tables (metrics per arm and N, comparisons, GAN quality)
    figures.py   the report's figures (metrics vs N and vs extra images) and kept sample grids
    report.py    report.md, summary.csv, comparisons.csv and the figures
    cli.py       flags -> StudyConfig -> run_study
"""
