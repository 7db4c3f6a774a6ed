"""The linear probe of the demo's pretrained model on AV-digits: `demo_finetune.py` with only
the linear head trained, the backbone frozen in inference mode (spec §10).

    python -m stica_jax.evaluate --config=configs/eval/demo_linear.py \\
        --config.init.workdir=/tmp/stica_demo --workdir=/tmp/stica_demo_linear

Needs: a CPU (float32). Measured on 2 shared CPU cores: about 60 s of CPU time
(benchmarks/RESULTS.md, "The demo evaluation"). Memory not measured.
"""

import ml_collections

from configs.eval import demo_finetune


def get_config() -> ml_collections.ConfigDict:
    config = demo_finetune.get_config()
    config.protocol = "linear"
    return config
