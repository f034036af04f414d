"""``python -m local.wecom_sim``: a standalone simulator with one demo account."""

from local.wecom_sim.simulator import main

if __name__ == "__main__":
    main()
