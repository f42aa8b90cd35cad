"""The step profiler's sums per op type, part of the network and pass, and its argument checks (the profiling
itself runs in the benchmark)."""

import pytest


@pytest.fixture(scope="module")
def profiler(load_benchmark):
    return load_benchmark("profile_step")


def test_parts_of_the_network_come_from_node_names(profiler):
    assert profiler.role_of("spanet/block3/attention/context/MatMul") == "attention"
    assert profiler.role_of("gradient_tape/spanet/block2/expand/cheap/depthwise") == (
        "self-proliferation: cheap depthwise"
    )
    assert profiler.role_of("spanet/block12/strided_dw/depthwise") == "strided depthwise"
    assert profiler.role_of("spanet/block1/expand_bn/FusedBatchNormV3") == "BatchNorm"
    assert profiler.role_of("SGD/ResourceApplyKerasMomentum_3") == "optimizer update"
    assert profiler.role_of("circle_loss/Sum") == "other (loss, reshapes, variable reads)"
    # The second half of a batch, traced again: TensorFlow makes the scopes unique.
    assert profiler.role_of("spanet/block4/shortcut_dw_1/depthwise") == "shortcut depthwise"
    assert profiler.role_of("spanet/block4/shortcut_proj_1/MatMul") == "shortcut 1x1"


def test_summary_sums_thread_time_per_step(profiler):
    ms = 10**9  # picoseconds in a millisecond
    events = [
        ("spanet/block1/expand/intrinsic/MatMul", "MatMul", "tf_Compute/1", 0, 6 * ms),
        ("gradient_tape/spanet/block1/expand/intrinsic/MatMul/MatMul", "MatMul", "tf_Compute/2", 0, 10 * ms),
        (
            "gradient_tape/spanet/block1/expand_bn/FusedBatchNormGradV3",
            "FusedBatchNormGradV3",
            "tf_Compute/1",
            0,
            2 * ms,
        ),
        ("SGD/ResourceApplyKerasMomentum", "ResourceApplyKerasMomentum", "tf_Compute/1", 0, 2 * ms),
    ]
    summary = profiler.summarise(events, steps=2, wall_s=0.03)
    assert summary["wall_ms_per_step"] == 15.0 and summary["op_thread_ms_per_step"] == 10.0
    assert summary["ops_per_step"] == 2
    assert summary["by_op_type"][0] == {"name": "MatMul", "ms_per_step": 8.0, "share": 0.8, "ops_per_step": 1.0}
    assert {row["name"]: row["ms_per_step"] for row in summary["by_pass"]} == {
        "backward": 6.0,
        "forward": 3.0,
        "optimizer": 1.0,
    }
    text = profiler.markdown({"batch": 64, "pass": "training", **summary}, top=1)
    assert "| MatMul | 8.0 | 80.0 % |" in text and "| 2 other op types | 2.0 | 20.0 % |" in text


@pytest.mark.parametrize("option", ["--steps", "--batch"])
def test_bad_counts_are_refused_with_one_line(profiler, option, capsys):
    with pytest.raises(SystemExit):
        profiler.main([option, "0"])
    assert f"{option} must be at least 1; got 0" in capsys.readouterr().err
