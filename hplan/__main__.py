from hplan.cli import main

main()
