"""Fleet provisioning helpers shared by tools/provision.py, deploy.py and doctor.py.

    fleet.ids     device ids a technician may use (no paths, no account names)
    fleet.broker  broker accounts, ACL, Mosquitto configuration, revocation
    fleet.checks  checks run on the host with the firmware's own validators
"""
