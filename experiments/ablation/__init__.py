"""The ablation of SPEC section 9: its rows trained and evaluated (`rows`), its table (`table`) and
figures (`figures`); `python -m experiments.ablation` runs it (`__main__`)."""
