"""``python -m viscy_data.rechunk SOURCE DEST``: the ``rechunk`` command line."""

from viscy_data.rechunk.cli import main

if __name__ == "__main__":
    main()
