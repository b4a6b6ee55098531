"""The ``innerlab`` command line (placeholder until the CLI lands)."""


def main() -> None:
    from innerlab.envs import list_envs

    for name in list_envs():
        print(name)
