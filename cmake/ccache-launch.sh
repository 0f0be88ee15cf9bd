#!/bin/sh
# The compiler launcher: runs the compile line it is given ("ccache c++ ... -o OUT ..."). A precompiled header's old
# .gch is removed first: ccache takes the old output for a precompiled header the compile uses and keys the result
# on it rather than on the headers it is built from, so after a header change an old .gch could come back from the
# cache (seen: a declaration added to a header the addon's precompiled header includes was missing).
previous=
for argument in "$@"; do
  if [ "$previous" = "-o" ]; then
    case "$argument" in *.gch) rm -f "$argument" ;; esac
  fi
  previous=$argument
done
exec "$@"
