"""`picochat sft`: supervised fine-tuning on conversations (picochat/sft.py)."""

from picochat.settings import SFT_PRESETS, SFTConfig, add_command

HELP = "Supervised fine-tuning on conversations."


def add_parser(subparsers) -> None:
    add_command(subparsers, "sft", run, SFTConfig, HELP, presets=SFT_PRESETS)


def run(config, args) -> None:
    from picochat.data.fetch import fetch_task_data
    from picochat.sft import sft

    fetch_task_data(config.mix)  # the tasks only read files
    sft(config)
