from timeslots.cli import main

main()
