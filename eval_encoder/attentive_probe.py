"""Entry point kept from the upstream scripts: ``torchrun attentive_probe.py --dataset ssv2``.

Run it from inside ``eval_encoder/`` as upstream users do, or as
``python -m eval_encoder probe``; the flags are the same.
"""
import sys

from eval_encoder.probe.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="attentive_probe.py"))
