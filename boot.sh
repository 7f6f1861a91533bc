#! /bin/sh
# Generates this project's configure script.  OVS's own build system is
# regenerated when the fork is assembled.
autoreconf --install --force
