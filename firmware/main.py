# main.py runs after boot.py. The application decides between its main loop
# and safe mode; either way an exception never leaves the board in a crash loop.
# A release on trial that cannot even be imported is rolled back here.
try:
    import transit.startup
except Exception as e:  # noqa - a broken release: otaboot decides, else re-raise
    import otaboot

    if otaboot.failed("import: %r" % (e,)):
        import machine

        print("ota: release on trial failed to import:", repr(e))
        machine.reset()
    raise

transit.startup.main()
