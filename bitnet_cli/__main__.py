from bitnet_cli.cli.app import main

main()
