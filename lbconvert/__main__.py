"""``python -m lbconvert`` is the same as the ``lbconvert`` command."""

from lbconvert.cli import main

if __name__ == "__main__":
    main()
