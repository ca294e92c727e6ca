from hybridos.cli.entry import main

main()
