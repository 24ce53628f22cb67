# main.py runs after boot.py. The application decides between its main loop
# and safe mode; either way an exception never leaves the board in a crash loop.
import transit.startup

transit.startup.main()
