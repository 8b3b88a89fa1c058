"""MEA-Defender with cross-entropy only (similarity and KL weights 0): what the paper's extra losses add here.

The reliability bench (bench/demo_reliability.py, same arguments) with ewe.watermarks.mea's two weights set to 0,
e.g. (docs/history/2026-11-30-mea-defender-and-dawn.md; rows in docs/RESULTS.md §2):

    python bench/mea_ce_only.py --dataset fashion-mnist --data-dir DATA --victims 0-2 --thieves 3 \\
        --variants same-soft5,same-hard --set 'schemes=["mea_defender"]' --threads 1 --out OTHER_DIR

Use another --out than the full scheme's runs: the folder names do not record the weights.
"""
import sys

import ewe.watermarks.mea as mea

mea.KL_WEIGHT, mea.SIMILARITY_WEIGHT = 0.0, 0.0

import demo_reliability  # noqa: E402  (beside this script: python puts its folder first on the path)

if __name__ == "__main__":
    sys.exit(demo_reliability.main())
