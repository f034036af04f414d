"""`kefu`: the operator's command line for a Kefu stack, local (`make dev`) or deployed (`sam deploy`).

Commands: preflight, messages, stats, dlq, link. Run `kefu --help` or see docs/cli.md.
"""
