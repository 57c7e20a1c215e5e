"""Start fabpanel: `python main.py` (see `python main.py --help`)."""

from fabpanel.cli import main

if __name__ in {'__main__', '__mp_main__'}:
    main()
