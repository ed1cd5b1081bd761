/**
 * User and group names for ids and back, read from /etc/passwd and
 * /etc/group once per process. Owners travel by name (like rsync): a replica
 * maps a name it knows to its own id, and keeps the number otherwise.
 * (Names served by NSS modules other than files are not seen: the number
 * travels alone then.)
 *
 * @module
 */

interface Table {
  byId: Map<number, string>;
  byName: Map<string, number>;
}

let users: Table | undefined;
let groups: Table | undefined;

function load(path: string): Table {
  const t: Table = { byId: new Map(), byName: new Map() };
  let text = "";
  try {
    text = Deno.readTextFileSync(path);
  } catch { /* no such database: numbers only */ }
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    const n = Number(id);
    if (!name || !Number.isInteger(n)) continue;
    if (!t.byId.has(n)) t.byId.set(n, name);
    if (!t.byName.has(name)) t.byName.set(name, n);
  }
  return t;
}

/** The user name of `uid`, or "" if unknown here. */
export function userName(uid: number): string {
  users ??= load("/etc/passwd");
  return users.byId.get(uid) ?? "";
}

/** The group name of `gid`, or "" if unknown here. */
export function groupName(gid: number): string {
  groups ??= load("/etc/group");
  return groups.byId.get(gid) ?? "";
}

/** This host's uid for an owner that travelled as `name` and `uid`: by name where known. */
export function localUid(name: string, uid: number): number {
  users ??= load("/etc/passwd");
  return (name ? users.byName.get(name) : undefined) ?? uid;
}

/** This host's gid for a group that travelled as `name` and `gid`: by name where known. */
export function localGid(name: string, gid: number): number {
  groups ??= load("/etc/group");
  return (name ? groups.byName.get(name) : undefined) ?? gid;
}

let root: boolean | undefined;

/** True if this process runs as root (asked once: Deno.uid() is a system call each time). */
export function runAsRoot(): boolean {
  return root ??= Deno.uid() === 0;
}
