from safecity.cli import main

main()
