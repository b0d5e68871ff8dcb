"""Entry point kept from the upstream codec script: the same trainer with the codec family.

``torchrun attentive_probe_codec.py --model_family llava_vit_codec ...`` is
``attentive_probe.py`` with the codec family as the default family.
"""
import sys

from eval_encoder.probe.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="attentive_probe_codec.py",
                  base={"model_family": "codec", "num_frames": 64}))
