"""The shell scripts an ssh remote's host runs (POSIX sh, tar, find, git; $R is the
remote's folder). Kept apart from the transport that sends them."""

from __future__ import annotations

_SYNC = 'sync -f "$R" 2>/dev/null || sync'
_LIST = 'cd "$R" 2>/dev/null || exit 0; find records -type f -name "*.json" 2>/dev/null; true'
_CREATE = """set -e
if [ -f "$R/datmo-remote.json" ]; then cat "$R/datmo-remote.json"; exit 0; fi
if [ -d "$R" ] && [ -n "$(ls -A "$R" | grep -vxE 'objects|tmp|records|git')" ]; then
  echo @notempty; exit 0
fi
command -v git >/dev/null 2>&1 || {{ echo @nogit; exit 0; }}
mkdir -p "$R/objects" "$R/tmp" "$R/records/environments" "$R/records/snapshots" \
  "$R/records/sweeps" "$R/records/runs"
if [ ! -f "$R/git/HEAD" ] || [ ! -f "$R/git/config" ] || [ ! -d "$R/git/objects" ] \
    || [ ! -d "$R/git/refs" ]; then
  g="$R/tmp/git-$$"; rm -rf "$g"
  git init --quiet --bare --template= "$g"
  {config}
  rm -rf "$R/git"; mv "$g" "$R/git"
fi
t="$R/tmp/meta-$$"
cat > "$t"
ln "$t" "$R/datmo-remote.json" 2>/dev/null || true
rm -f "$t"
{sync}
cat "$R/datmo-remote.json"
"""
# The whole stream lands in a fresh folder of tmp/ first: nothing moves before it is all
# there and synced. Then objects, a sync, and records kind by kind, each kind synced.
_RECEIVE = """set -e
umask 022
mkdir -p "$R/tmp"
find "$R/tmp" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {{}} + 2>/dev/null || true
t="$R/tmp/in-$$-$(date +%s)"
mkdir "$t"
tar -xf - -C "$t"
{sync}
if [ -d "$t/objects" ]; then
  for d in "$t"/objects/*; do
    [ -d "$d" ] || continue
    n=${{d##*/}}
    mkdir -p "$R/objects/$n"
    mv -f "$d"/* "$R/objects/$n/"
  done
  {sync}
fi
for k in {kinds}; do
  if [ -d "$t/records/$k" ]; then
    mkdir -p "$R/records/$k"
    mv -f "$t/records/$k"/* "$R/records/$k/"
    {sync}
  fi
done
rm -rf "$t"
echo @ok
"""
_MISSING = """cd "$R/objects" 2>/dev/null || { cat; exit 0; }
while IFS= read -r k; do [ -f "$k" ] || echo "$k"; done"""
_TAR_OUT = 'cd "$R" && tar -cf - -T -'
_ALL_OBJECTS = 'cd "$R" 2>/dev/null || exit 0; find objects -type f | tar -cf - -T -'
# Ref locks a killed push left: the ones still there after a wait no live push needs.
_UNLOCK = """cd "$R/git/refs/datmo/snapshots" 2>/dev/null || exit 0
old=$(ls -A | grep '[.]lock$' || true)
[ -n "$old" ] || exit 0
sleep {wait}
for f in $old; do rm -f "./$f"; done
"""
_GIT_STATE = """cd "$R" || exit 1
if [ ! -f git/HEAD ]; then echo @nogit; exit 0; fi
git --git-dir git for-each-ref --format='%(objectname) %(refname)' refs/datmo/snapshots/
echo @fsck
git --git-dir git fsck --no-dangling --no-progress 2>&1 || true
"""
