"""The Race of the README's screenshot (the first example prompt, diffusion against AR, γ 0.8, S 16, 16 steps per
block, 96 new tokens, three timed runs per mode), run twice in-process with no browser on the host, through the
app's own handler, at torch's default thread count (two on this host):

    python benchmarks/threads/race_in_process.py > benchmarks/threads/race_in_process.txt
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

from twotower.engine import load_engine  # noqa: E402
from ui.examples import EXAMPLE_PROMPTS  # noqa: E402
from ui.handlers import Handlers  # noqa: E402

handlers = Handlers(load_engine())
prompt = list(EXAMPLE_PROMPTS.values())[0]
print(f"threads {torch.get_num_threads()}; prompt {prompt!r}")
for _ in range(2):
    *_, (_, _, measured) = list(handlers.race(prompt, ["diffusion"], 0.8, 16, 16, 96, 3))
    tps = measured["tokens_per_s"]
    print(f"AR {tps['ar']:.1f} tokens/s, diffusion {tps['diffusion']:.1f} ({tps['diffusion'] / tps['ar']:.2f}x)")
