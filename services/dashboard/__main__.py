import sys

from services.dashboard.main import main

main(sys.argv[1:])
