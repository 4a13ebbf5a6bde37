from bwvisu_cli.main import main

main()
