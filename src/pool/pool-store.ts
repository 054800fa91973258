/**
 * Pool state: which hosts form the pool and where their control APIs listen. The pool key is not
 * here; every member reads it from its own key file (`--key-file`).
 *
 * It sits behind {@link PoolStore} so that where it lives can change. {@link FilePoolStore} keeps
 * it in one JSON file, enough for one operator's machine. An HA pool would hold it in an existing
 * replicated store such as etcd (one key per host, compare-and-swap on change); livemig does not
 * write a consensus protocol of its own.
 */

import { ConflictError, InvalidArgumentError, NotFoundError } from '../errors.js';
import { readJsonFile, writeJsonAtomically } from './json-file.js';

/** One member of the pool. */
export interface PoolMember {
  /** Unique in the pool: letters, digits, `.`, `_` and `-`, starting with a letter or digit. */
  name: string;
  /** Its control API, `http://` or `https://`. */
  url: string;
}

/** Where the pool's membership is kept. */
export interface PoolStore {
  /** Every member, in the order they were added. */
  list(): Promise<PoolMember[]>;
  /** Adds a member. @throws ConflictError if its name or URL is taken. */
  add(member: PoolMember): Promise<void>;
  /** Removes a member by name. @throws NotFoundError if there is none. */
  remove(name: string): Promise<void>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The pool file's shape: `{ "hosts": [{ "name": "a", "url": "http://10.0.0.1:7070" }] }`. */
interface PoolFile {
  hosts: PoolMember[];
}

/**
 * Pool membership in a JSON file (`pool.json`), rewritten atomically on every change. Changes
 * from one process are applied in turn; two processes changing the file at once are not
 * arbitrated (the last rename wins), which is what a replicated store would add.
 */
export class FilePoolStore implements PoolStore {
  readonly path: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    if (typeof path !== 'string' || path === '') throw new InvalidArgumentError('a pool file path must be a non-empty string');
    this.path = path;
  }

  async list(): Promise<PoolMember[]> {
    return (await this.#read()).hosts;
  }

  async add(member: PoolMember): Promise<void> {
    const checked = checkMember(member);
    return this.#change((file) => {
      const taken = file.hosts.find((h) => h.name === checked.name || h.url === checked.url);
      if (taken) throw new ConflictError(`the pool already has ${taken.name} at ${taken.url}`);
      file.hosts.push(checked);
    });
  }

  remove(name: string): Promise<void> {
    return this.#change((file) => {
      const at = file.hosts.findIndex((h) => h.name === name);
      if (at < 0) throw new NotFoundError(`the pool has no host named "${name}"`);
      file.hosts.splice(at, 1);
    });
  }

  #change(edit: (file: PoolFile) => void): Promise<void> {
    const next = this.#queue.then(async () => {
      const file = await this.#read();
      edit(file);
      await writeJsonAtomically(this.path, file);
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #read(): Promise<PoolFile> {
    const raw = await readJsonFile(this.path, 'pool file');
    if (raw === undefined) return { hosts: [] };
    const hosts = (raw as Partial<PoolFile> | null)?.hosts;
    if (!Array.isArray(hosts)) throw new InvalidArgumentError(`the pool file ${this.path} must hold {"hosts": [...]}`);
    const seen = new Set<string>();
    return {
      hosts: hosts.map((h: unknown) => {
        const member = checkMember(h as PoolMember, this.path);
        if (seen.has(member.name)) throw new InvalidArgumentError(`the pool file ${this.path} names ${member.name} twice`);
        seen.add(member.name);
        return member;
      }),
    };
  }
}

/** A member with a valid name and URL, stripped of anything else. */
function checkMember(member: PoolMember, file?: string): PoolMember {
  const where = file ? ` in the pool file ${file}` : '';
  if (typeof member !== 'object' || member === null) throw new InvalidArgumentError(`a pool member must be {name, url}${where}`);
  const { name, url } = member;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidArgumentError(`a host name must be 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit${where}, got ${JSON.stringify(name)}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(`host ${name} needs a control URL such as http://10.0.0.1:7070${where}, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new InvalidArgumentError(`host ${name}'s control URL must be http:// or https://${where}, got ${url}`);
  }
  return { name, url };
}
