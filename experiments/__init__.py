"""The paper's experiments, reproduced on any data set the readers accept (synthetic by default).

    python experiments/r_sweep.py --quick --out docs/results
    python experiments/ablation.py --quick --out docs/results
    python experiments/model_comparison.py --quick --out docs/results

``harness`` holds the shared data loading, training and scoring; ``plots`` the figures;
``report`` the Markdown. Quick mode runs in minutes on a 2-core CPU; full mode is for a GPU.
"""
