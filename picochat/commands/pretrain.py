"""`picochat pretrain`: train the base model (picochat/pretrain.py)."""

from picochat.settings import PRETRAIN_PRESETS, PretrainConfig, add_command, add_plan_flags

HELP = "Pretrain the base model."


def add_parser(subparsers) -> None:
    presets = dict(presets=PRETRAIN_PRESETS, default_preset="cpu-demo")
    parser = add_command(subparsers, "pretrain", run, PretrainConfig, HELP, **presets)
    parser.set_defaults(check=check)
    add_plan_flags(parser)


def check(config, args) -> None:
    """What only the model knows (its heads against --kv-groups), before --print-config too."""
    from picochat.pretrain import check_config

    check_config(config)


def run(config, args) -> None:
    if args.plan:
        from picochat.plan import plan_pretraining, tokenizer_vocab

        print(plan_pretraining(config, tokenizer_vocab(config), args.gpu, args.gpus))
        return
    from picochat.data.fetch import fetch_task_data
    from picochat.pretrain import pretrain
    from picochat.settings import conversation_mix

    fetch_task_data(conversation_mix(config))
    pretrain(config)
