"""The profiling tools of benchmarks/: the kernel categoriser on real kernel names of XLA:GPU,
cuDNN, cuBLAS, NCCL, PyTorch and Triton; the trace readers on traces shaped like
torch.profiler's and jax.profiler's; the HLO counter on programs whose collectives, convolutions
and bytes are known; the comparison tables; and that the shape-only lowering of
`benchmarks.measured_step` is the program the timing process compiles (so the persistent cache
hits)."""

import gzip
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from benchmarks import compare, measured_step, profile_summary
from benchmarks.train_step import synthetic_batch
from stica_jax import hlo, step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KERNELS = {
    # cuDNN / CUTLASS convolutions (forward, data gradient, weight gradient)
    "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_ndhwc_kt1r3s3c_tilesize128x128x64": (
        "convolution"
    ),
    "sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize64x64": "convolution",
    "sm80_xmma_wgrad_implicit_gemm_indexed_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
    "void cudnn::cnn::conv2d_grouped_direct_kernel<false, true, false>": "convolution",
    "void implicit_convolve_sgemm<float, float, 128, 5, 5, 3, 3, 3, 1, false>": "convolution",
    "cutlass3x_sm90_tensorop_s64x64x16gemm_bf16_bf16_f32_wgrad": "convolution",
    # matrix products
    "nvjet_tst_128x64_64x8_2x1_v_bz_TNT": "gemm",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1": "gemm",
    "ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_32x6_tn": "gemm",
    "gemm_fusion_dot_12": "gemm",
    "triton_gemm_dot_3": "gemm",
    "fmha_cutlassF_bf16_aligned_64x64_rf_sm80": "gemm",
    "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>": "gemm",
    # BatchNorm and other reductions
    "void cudnn::bn_fw_tr_1C11_kernel_NCHW<__nv_bfloat16, float, 512, true, 1>": "reduction/bn",
    "void at::native::batch_norm_collect_statistics_channels_last_kernel<float>": "reduction/bn",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>": "reduction/bn",
    "input_reduce_fusion_14": "reduction/bn",
    "input_multiply_reduce_fusion": "reduction/bn",
    "triton_red_fused_native_batch_norm_backward_12": "reduction/bn",
    "void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>": "reduction/bn",
    # elementwise
    "loop_multiply_fusion_3": "elementwise",
    "loop_add_maximum_fusion": "elementwise",
    "loop_convert_fusion_7": "elementwise",
    "fusion_123": "elementwise",
    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>": (
        "elementwise"
    ),
    "triton_poi_fused_add_relu_threshold_backward_4": "elementwise",
    "void at::native::(anonymous)::multi_tensor_apply_kernel<SGD>": "elementwise",
    # copies and layout changes
    "loop_transpose_fusion_2": "copy/transpose",
    "input_transpose_fusion": "copy/transpose",
    "copy_fusion_9": "copy/transpose",
    "Memcpy DtoD (Device -> Device)": "copy/transpose",
    "Memset (Device)": "copy/transpose",
    "void cudnn::ops::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat16, float, false, true>": (
        "copy/transpose"
    ),
    "void at::native::(anonymous)::CatArrayBatchedCopy<float, unsigned int, 4>": "copy/transpose",
    "loop_dynamic_slice_fusion": "copy/transpose",
    # collectives
    "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)": "collective",
    "ncclKernel_AllGather_RING_LL_Sum_int8_t": "collective",
    "all-reduce-start.12": "collective",
    "all-gather.3": "collective",
}


@pytest.mark.parametrize("name,category", sorted(KERNELS.items()))
def test_categorize_kernel_names(name, category):
    assert profile_summary.categorize(name) == category


def test_generic_xla_names_take_the_hlo_category():
    hlo = {"fusion.12": "convolution", "ynn_fusion.3": "gemm", "custom-call.4": "convolution"}
    assert profile_summary.categorize("fusion.12", hlo) == "convolution"
    assert profile_summary.categorize("ynn_fusion.3", hlo) == "gemm"
    assert profile_summary.categorize("custom-call.4", hlo) == "convolution"
    assert profile_summary.categorize("fusion.99", hlo) == "elementwise"  # not in the HLO
    # A telling kernel name wins over the HLO map.
    assert profile_summary.categorize("input_reduce_fusion", {"input_reduce_fusion": "gemm"}) == (
        "reduction/bn"
    )


def _write(path, events, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    return str(path)


def test_torch_trace_summary(tmp_path):
    events = [
        {"ph": "X", "cat": "kernel", "name": "sm90_xmma_fprop_implicit_gemm_x", "dur": 300.0},
        {"ph": "X", "cat": "kernel", "name": "nvjet_tst_128x64", "dur": 100.0},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD", "dur": 50.0},
        {"ph": "X", "cat": "kernel", "name": "cudnn::bn_fw_tr_1C11", "dur": 150.0},
        {"ph": "X", "cat": "cpu_op", "name": "aten::convolution", "dur": 9999.0},  # host side
    ]
    s = profile_summary.summarize_trace(_write(tmp_path / "t.json", events), steps=2)
    c = s["categories"]
    assert s["source"] == "torch-gpu"
    assert s["total_ms_per_step"] == pytest.approx(0.3)
    assert c["convolution"]["ms_per_step"] == pytest.approx(0.15)
    assert c["gemm"]["share"] == pytest.approx(100 / 600)
    assert c["copy/transpose"]["kernels_per_step"] == 0.5
    assert c["reduction/bn"]["ms_per_step"] == pytest.approx(0.075)
    assert "convolution" in profile_summary.format_summary(s)


def test_jax_gpu_trace_counts_streams_once(tmp_path):
    meta = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 7, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 7, "tid": 1, "name": "thread_name", "args": {"name": "XLA Modules"}},
        {"ph": "M", "pid": 7, "tid": 2, "name": "thread_name", "args": {"name": "XLA Ops"}},
        {"ph": "M", "pid": 7, "tid": 3, "name": "thread_name", "args": {"name": "Stream #14"}},
    ]
    events = meta + [
        {"ph": "X", "pid": 7, "tid": 1, "name": "jit_per_device", "dur": 1000.0},
        {"ph": "X", "pid": 7, "tid": 2, "name": "custom-call.3", "dur": 400.0},
        {"ph": "X", "pid": 7, "tid": 2, "name": "fusion.5", "dur": 100.0},
        {
            "ph": "X",
            "pid": 7,
            "tid": 3,
            "name": "sm90_xmma_fprop_implicit_gemm",
            "dur": 400.0,
            "args": {"hlo_op": "custom-call.3"},
        },
        {"ph": "X", "pid": 7, "tid": 3, "name": "fusion_5", "dur": 100.0, "args": {}},
        {"ph": "X", "pid": 1, "tid": 9, "name": "PjitFunction", "dur": 5000.0},
    ]
    path = _write(tmp_path / "perfetto_trace.json.gz", events, gz=True)
    s = profile_summary.summarize_trace(path)
    assert s["source"] == "jax-gpu"
    assert s["total_ms_per_step"] == pytest.approx(0.5)  # streams only, not the derived lines
    assert s["categories"]["convolution"]["ms_per_step"] == pytest.approx(0.4)
    assert s["categories"]["elementwise"]["ms_per_step"] == pytest.approx(0.1)


def test_jax_cpu_trace_of_a_real_step(tmp_path):
    """A real jax.profiler trace on the CPU: XLA's operations, categorised via the HLO."""

    @jax.jit
    def f(x, w):
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum(jax.nn.relu(y) ** 2)

    x, w = jnp.ones((4, 32, 32, 8)), jnp.ones((3, 3, 8, 16))
    compiled = f.lower(x, w).compile()
    compiled(x, w).block_until_ready()
    with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
        for _ in range(2):
            compiled(x, w).block_until_ready()
    trace = next(tmp_path.rglob("perfetto_trace.json.gz"))
    hlo_categories = hlo.categories(compiled.as_text())
    assert "convolution" in hlo_categories.values()
    s = profile_summary.summarize_trace(str(trace), steps=2, hlo_categories=hlo_categories)
    assert s["source"] == "jax-cpu" and s["total_ms_per_step"] > 0
    assert s["categories"]["convolution"]["kernels_per_step"] >= 1


def _shard(mesh, x, spec):
    return jax.device_put(x, NamedSharding(mesh, spec))


def test_hlo_stats_counts_collectives_and_bytes():
    mesh = step.make_mesh(jax.devices()[:4])

    def per_device(x, y):
        a = jax.lax.psum(x, "data")  # f32[1000]: 4000 B
        b = jax.lax.pmean(y, "data")  # bf16[3000]: 6000 B
        g = jax.lax.all_gather(x[:10], "data", tiled=True)  # f32[40] gathered: 160 B
        return a, b, g

    f = jax.jit(
        jax.shard_map(
            per_device, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=(P(), P(), P("data"))
        )
    )
    x = _shard(mesh, np.ones(4000, np.float32), P("data"))
    y = _shard(mesh, np.ones(12000, jnp.bfloat16), P("data"))
    s = hlo.stats(f.lower(x, y).as_text(dialect="hlo"))
    ar, ag = s["collectives"]["all-reduce"], s["collectives"]["all-gather"]
    assert ar["count"] == 2 and ar["bytes"] == 4000 + 6000 and ar["small"] == 1
    assert ag["count"] == 1 and ag["bytes"] == 160
    optimised = hlo.stats(f.lower(x, y).compile().as_text())
    # XLA:CPU runs bf16 all-reduces in f32 (6000 B → 12000 B); XLA:GPU may keep bf16.
    assert optimised["collectives"]["all-reduce"]["bytes"] in (10000, 16000)
    assert optimised["instructions"] > 0


def test_hlo_stats_counts_convolutions_and_fusions():
    def f(x, w):
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        y = jax.lax.conv_general_dilated(y, w[..., :4, :4], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
        return jnp.transpose(jax.nn.relu(y), (0, 3, 1, 2))

    x, w = jnp.ones((2, 16, 16, 4)), jnp.ones((3, 3, 4, 4))
    lowered = jax.jit(f).lower(x, w)
    s = hlo.stats(lowered.as_text(dialect="hlo"))
    assert s["convolutions"] == 2 and s["transposes"] == 1 and s["fusions"] == 0
    o = hlo.stats(lowered.compile().as_text())
    assert o["convolutions"] == 2 and o["fusions"] >= 1
    assert hlo.shape_bytes("(f32[2,3]{1,0}, bf16[4]{0})") == 24 + 8


def test_compare_tables(tmp_path):
    def run(path, rows, **extra):
        data = dict(extra, results=rows)
        path.write_text(json.dumps(data))
        return str(path)

    def row(b, cps, mfu, variant=None, compile_s=1.0):
        return dict(
            batch_per_device=b,
            status="ok",
            clips_per_s=cps,
            mfu=mfu,
            step_ms=1e3 * b / cps,
            compile_s=compile_s,
            variant=variant,
        )

    jax_json = run(tmp_path / "j.json", [row(8, 90.0, 0.17), row(16, 100.0, 0.19)])
    torch_json = run(
        tmp_path / "t.json",
        [row(8, 60.0, 0.11, "eager/channels_last_3d"), row(8, 75.0, 0.14, "eager/ncdhw")],
    )
    lines = compare.framework_table([json.loads(open(jax_json).read())], json.loads(open(torch_json).read()))  # fmt: skip
    row8 = next(x for x in lines if x.startswith("| 8 |"))
    assert "1.20×" in row8 and "eager/ncdhw" in row8  # 90 / best 75
    row16 = next(x for x in lines if x.startswith("| 16 |"))
    assert row16.endswith("| — | — |")
    fix = json.loads(
        open(run(tmp_path / "f.json", [row(16, 110.0, 0.2)], variant="bn_one_pass")).read()
    )
    table = compare.fixes_table(json.loads(open(jax_json).read()), [fix], 16)
    assert any("bn_one_pass" in x and "+10.0%" in x for x in table)
    assert compare.main([f"--jax={jax_json}", f"--torch={torch_json},{tmp_path}/missing.json"]) == 0
    cats = {c: {"ms_per_step": 1.0, "share": 0.5} for c in profile_summary.CATEGORIES}
    prof = {"categories": cats, "total_ms_per_step": 2.0}
    table = compare.profile_table([("JAX", prof), ("PyTorch", None)])
    assert table[0] == "| category | JAX ms/step (share) |" and "| total | 2.00 |" in table


@pytest.mark.slow
def test_shape_only_lowering_is_the_timed_program():
    """`--compile_only` fills the cache with the program the timing process then compiles:
    the lowering from shapes equals the lowering from the placed arrays."""
    config = measured_step.load_config(tiny=True)
    mesh = step.make_mesh(jax.devices()[:2])
    options = measured_step.ModelOptions(bn_one_pass=True)
    from_shapes = measured_step.lower_step(config, mesh, 2, options).as_text()

    optimizer = measured_step.benchmark_optimizer()
    graphdef, state = step.init_train_state(measured_step.new_model(config, 0, options), optimizer)
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(state, replicated)
    batch = jax.device_put(synthetic_batch(config, 4), step.batch_sharding(mesh))
    keys = jax.device_put(jax.random.split(jax.random.key(0), 3), replicated)
    train_step = step.make_train_step(
        graphdef, optimizer, step.LossConfig.from_config(config.loss), mesh
    )
    assert train_step.lower(state, batch, keys[0]).as_text() == from_shapes


def test_gpu_script_parses_and_names_its_outputs():
    import subprocess

    script = os.path.join(REPO, "benchmarks", "gpu.sh")
    out = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = open(script).read()
    for needed in (
        "-m benchmarks.torch_baseline",
        "-m benchmarks.train_step",
        "--compile_only",
        "-m benchmarks.compare",
        "--profile_dir",
    ):
        assert needed in text
