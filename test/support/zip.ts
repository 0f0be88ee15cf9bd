import zlib from 'node:zlib';

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
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
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
