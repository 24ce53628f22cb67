"""`select` for the simulator: the built-in, with poll() waits moving the
virtual clock (fakeclock.VirtualPoll).

On a board, time passes while the firmware waits on a socket; the
simulator's clock otherwise moves only when the firmware sleeps, so a
broker that accepts TCP and never answers held the bus at one instant and
the connect deadline never came. tools/sim.py puts this folder first on
MICROPYPATH; the tests keep the plain module.
"""

import uselect
from uselect import *  # noqa: F401,F403  POLLIN, POLLOUT, POLLERR, POLLHUP, select

from fakeclock import VirtualPoll


def poll():
    return VirtualPoll(uselect.poll())
