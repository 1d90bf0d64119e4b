"""``python -m aigc_engine`` is ``aigc-engine`` (useful under torchrun)."""
from .cli import main

main()
