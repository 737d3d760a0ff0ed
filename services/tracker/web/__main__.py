import sys

from services.tracker.web.main import main

main(sys.argv[1:])
