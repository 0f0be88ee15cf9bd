import zlib from 'node:zlib';

/** The archive: local entries, then the central directory and its end record (`count` entries, at `offset`). */
function archive(locals: Buffer[], centrals: Buffer[], count: number, offset: number): Buffer {
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/**
 * A minimal uncompressed ZIP writer for crafting .npz files in tests, with each entry's CRC-32 as NumPy checks it. An
 * entry with `sameDataAs: i` has a directory record only, pointing at entry i's local header and data (a zip bomb's
 * trick: many entries, one copy of the data).
 */
export function storedZip(files: { name: string; data: Buffer; sameDataAs?: number }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const { name, data: own, sameDataAs } of files) {
    const nameBytes = Buffer.from(name);
    const data = sameDataAs === undefined ? own : files[sameDataAs].data;
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(sameDataAs === undefined ? offset : offsets[sameDataAs], 42);
    centrals.push(central, nameBytes);
    offsets.push(offset);
    if (sameDataAs !== undefined) continue;
    locals.push(local, nameBytes, data);
    offset += 30 + nameBytes.length + data.length;
  }
  return archive(locals, centrals, files.length, offset);
}

export interface ZipMember {
  name: string;
  /** The member's bytes (inflated when the archive deflates them). */
  data: Buffer;
  method: number;
  compressedSize: number;
}

/** The members of a zip archive without a comment, read from its central directory. */
export function readZip(bytes: Buffer): ZipMember[] {
  const end = bytes.length - 22;
  if (bytes.readUInt32LE(end) !== 0x06054b50)
    throw new Error('no end-of-directory record where a zip without a comment has it');
  const count = bytes.readUInt16LE(end + 10);
  let cursor = bytes.readUInt32LE(end + 16);
  const members: ZipMember[] = [];
  for (let i = 0; i < count; i++) {
    if (bytes.readUInt32LE(cursor) !== 0x02014b50) throw new Error(`no directory record at ${cursor}`);
    const method = bytes.readUInt16LE(cursor + 10);
    const compressedSize = bytes.readUInt32LE(cursor + 20);
    const nameLength = bytes.readUInt16LE(cursor + 28);
    const extraLength = bytes.readUInt16LE(cursor + 30);
    const commentLength = bytes.readUInt16LE(cursor + 32);
    const local = bytes.readUInt32LE(cursor + 42);
    const name = bytes.toString('utf8', cursor + 46, cursor + 46 + nameLength);
    const start = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    const data = bytes.subarray(start, start + compressedSize);
    members.push({ name, method, compressedSize, data: method === 8 ? zlib.inflateRawSync(data) : data });
    cursor += 46 + nameLength + extraLength + commentLength;
  }
  return members;
}

/**
 * A zip laid out as numpy 2's savez / savez_compressed write it (Python's zipfile with force_zip64): the local
 * header's sizes are 0xffffffff with the real ones in a zip64 extra field, the central directory has them plainly.
 */
export function numpyZip(members: { name: string; data: Buffer }[], mode: 'stored' | 'deflate'): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const { name, data } of members) {
    const payload = mode === 'deflate' ? zlib.deflateRawSync(data) : data;
    const method = mode === 'deflate' ? 8 : 0;
    const crc = zlib.crc32(data);
    const nameBytes = Buffer.from(name);
    const local = Buffer.alloc(30 + nameBytes.length + 20);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0x21, 12); // 1980-01-01, as zipfile writes a zero date
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(0xffffffff, 18);
    local.writeUInt32LE(0xffffffff, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(20, 28);
    nameBytes.copy(local, 30);
    const extra = 30 + nameBytes.length;
    local.writeUInt16LE(0x0001, extra);
    local.writeUInt16LE(16, extra + 2);
    local.writeBigUInt64LE(BigInt(data.length), extra + 4);
    local.writeBigUInt64LE(BigInt(payload.length), extra + 12);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(45, 4);
    central.writeUInt16LE(45, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(payload.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, payload);
    centrals.push(central, nameBytes);
    offset += local.length + payload.length;
  }
  return archive(locals, centrals, members.length, offset);
}

/** A .npy (version 1 or 2) holding `data` under a given header text. */
export function npy(header: string, data: Buffer, version: 1 | 2 = 1): Buffer {
  const head = Buffer.from(header);
  const prefix = Buffer.alloc(version === 1 ? 10 : 12);
  Buffer.from('\x93NUMPY', 'latin1').copy(prefix);
  prefix[6] = version;
  if (version === 1) prefix.writeUInt16LE(head.length, 8);
  else prefix.writeUInt32LE(head.length, 8);
  return Buffer.concat([prefix, head, data]);
}
