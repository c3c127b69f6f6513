from hoodydb.cli import main

main()
