#!/usr/bin/env bash
# Re-make every table of docs/RESULTS.md §1, §2 and §4, docs/results-by-setting.md, the README's demo table and
# the Learn page's numbers from the stored run folders, with today's verdict code (no training, no stealing:
# --summary-only re-judges each copy from its stored answers).
#   bench/regenerate.sh [RUNS]      RUNS: the folder the bench/demo_reliability.py commands wrote (default
#                                   runs/reliability); the same commands without --summary-only train and steal.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-runs/reliability}
PY=${PYTHON:-.venv/bin/python}
DATA=${EWE_DATA_DIR:-../shared/data}
rm -f bench/results/reliability_*.jsonl bench/results/verdicts_*.json
rel() { $PY bench/demo_reliability.py --summary-only --out "$R" "$@"; }
D=bench/results/reliability_digits.jsonl
rel --dataset digits --victims 0-4 --thieves 5 --variants same-soft5,same-hard --set target=6 --results $D
rel --dataset digits --victims 0-4 --thieves 5 --variants disjoint-hard --set target=6 --results $D
rel --dataset digits --victims 0-4 --thieves 5 --variants disjoint-soft --set target=6 --results $D
rel --dataset digits --victims 0-4 --thieves 5 --variants refsched-hard,refsched-soft5 --set target=6 --results $D
rel --dataset digits --victims 0-2 --thieves 3 --variants same-hard,same-soft5 --set target=6 --set epochs=16 \
    --set w_epochs=12 --set extract_epochs=20 --note "budget x2 (H3)" --results $D
rel --dataset digits --victims 0-2 --thieves 3 --variants same-soft5,same-hard --set trigger='"in"' --set source=1 \
    --results $D
rel --dataset digits --victims 0-2 --thieves 3 --variants same-hard,disjoint-hard \
    --note "target 7: the preset before this session" --results $D
# the model-level schemes under a hard-label thief that trains until it fits (30 epochs), as DAWN's -e30 rows
# (RESULTS §1)
rel --dataset digits --victims 0-2 --thieves 3 --variants same-hard-e30 --set target=6 --results $D
# MEA-Defender beside the three schemes (issue 18; docs/RESULTS.md §1, §2)
rel --dataset digits --victims 0-2 --thieves 3 --variants same-hard,same-soft5 \
    --set 'schemes=["default","mea_defender"]' --note "with MEA-Defender" --results $D
M=bench/results/reliability_mnist.jsonl
rel --dataset mnist --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-soft5,same-hard --results $M
rel --dataset mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants fresh-hard,fresh-soft5 --results $M
rel --dataset mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants refsched-hard --results $M
F=bench/results/reliability_fashion.jsonl
rel --dataset fashion-mnist --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-soft5,same-hard,fresh-hard \
    --results $F
rel --dataset fashion-mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants refsched-hard --results $F
rel --dataset fashion-mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants same-soft5,same-hard \
    --set 'schemes=["default","mea_defender"]' --note "with MEA-Defender" --results $F
# MEA-Defender side studies (RESULTS §2), each in a folder of its own under RUNS: folder names do not
# record the loss weights or the source classes' meaning
M12=bench/results/reliability_mea.jsonl
$PY bench/mea_ce_only.py --summary-only --out "$R/mea-ce-only" --dataset digits --victims 0-2 --thieves 3 \
    --variants same-hard,same-soft5 --set 'schemes=["mea_defender"]' --note "MEA-Defender, cross-entropy only" \
    --results $M12
$PY bench/mea_ce_only.py --summary-only --out "$R/mea-ce-only" --dataset fashion-mnist --data-dir "$DATA" \
    --victims 0-2 --thieves 3 --variants same-soft5,same-hard --set 'schemes=["mea_defender"]' \
    --note "MEA-Defender, cross-entropy only" --results $M12
rel --dataset fashion-mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants same-soft5,same-hard \
    --set 'schemes=["mea_defender"]' --set 'mea_sources=[1,8]' --note "MEA-Defender, sources Trouser and Bag" \
    --results $M12 --out "$R/mea-sources"
rel --dataset speech-commands --data-dir "$DATA" --victims 0-2 --thieves 3 --variants same-soft5,same-hard \
    --results bench/results/reliability_speech.jsonl
# the margin-based watermark beside EWE (issue 26; its own file): the three standard thieves, then why its
# key does or does not carry over (bench/mbw_mechanism.py reads the same run folders)
B=bench/results/reliability_mbw.jsonl
rel --dataset digits --victims 0-4 --thieves 5 --variants same-hard,same-soft5,disjoint-hard \
    --set 'schemes=["defended","mbw"]' --note "with MBW" --results $B
$PY bench/mbw_mechanism.py "$R"/digits-quick-schemesdefended+mbw-*s? --out bench/results/mbw_mechanism_digits.json
for ds in mnist fashion-mnist; do
    rel --dataset $ds --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,fresh-hard,same-soft5 \
        --set 'schemes=["defended","mbw"]' --note "with MBW" --results $B
done
# speech has no training subset, so no thief with its own data: the owner's-data thieves only
rel --dataset speech-commands --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,same-soft5 \
    --set 'schemes=["defended","mbw"]' --note "with MBW" --results $B
# ... and a quarter of the radius (about the share of a feature's spread that 5/255 is of an MNIST pixel's)
rel --dataset speech-commands --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,same-soft5 \
    --set 'schemes=["defended","mbw"]' --set mbw_eps=0.005 --note "with MBW" --results $B
# dataset inference (issue 38; its own file): the same thieves, and its false accusations among innocents, the
# runs' clean models and 3 models per victim trained on the thief's own data (--di-independents)
DI=bench/results/reliability_dataset_inference.jsonl
rel --dataset digits --victims 0-4 --thieves 5 --variants same-hard,same-soft5 --set 'schemes=["dataset_inference"]' \
    --set target=6 --results $DI
for ds in mnist fashion-mnist; do
    rel --dataset $ds --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,fresh-hard,same-soft5 \
        --set 'schemes=["dataset_inference"]' --di-independents 3 --results $DI
done
rel --dataset speech-commands --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,same-soft5 \
    --set 'schemes=["dataset_inference"]' --results $DI
# where its membership signal is lost: the blind walk against the white-box margin and the soft-label loss
for ds in mnist fashion-mnist speech-commands; do
    $PY bench/di_signal.py "$R"/$ds-quick-schemesdataset_inference-s? --out bench/results/di_signal_${ds%%-*}.json
done
# DAWN (issue 18; RESULTS §1): the same victims' clean models behind the API, flipping 0.5 % of answers; the rows
# join their dataset's file, after its watermark rows
dawn() { rel --dawn-rate 0.005 --note "DAWN, flip rate 0.5 %" "$@"; }
dawn --dataset fashion-mnist --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,fresh-hard,same-soft5,same-hard-e30 \
    --results $F
dawn --dataset fashion-mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants fresh-hard-e30,same-soft5-e30 --results $F
dawn --dataset mnist --data-dir "$DATA" --victims 0-4 --thieves 5 --variants same-hard,same-soft5,same-hard-e30 --results $M
dawn --dataset mnist --data-dir "$DATA" --victims 0-2 --thieves 3 --variants fresh-hard,fresh-hard-e30,same-soft5-e30 \
    --results $M
dawn --dataset digits --victims 0-4 --thieves 5 --variants same-hard,same-soft5,same-hard-e30 --set target=6 --results $D
shopt -s nullglob
$PY bench/verdicts.py "$R"/digits-* --out bench/results/verdicts_digits.json
$PY bench/verdicts.py "$R"/mnist-* "$R"/fashion-* --out bench/results/verdicts_mnist_fashion.json
$PY bench/verdicts.py "$R"/speech-* --out bench/results/verdicts_speech.json
$PY bench/publish.py --runs "$R"     # also docs/RESULTS.md §1: the schemes side by side
