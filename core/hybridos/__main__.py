from hybridos.cli.main import main

main()
