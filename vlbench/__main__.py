from vlbench.cli.app import main

main()
