import { disposeTensors, loadTensors, saveTensors, tensor } from '../../lib';

/**
 * Writes the safetensors file `from` to `to` (the same path allowed) with each tensor's values, as float32,
 * replaced by `map(values, name)`, and the file's metadata kept (an adapter file stays loadable).
 */
export async function mapTensorFile(
  from: string,
  to: string,
  map: (values: Float32Array, name: string) => Float32Array,
): Promise<void> {
  const { tensors, metadata } = await loadTensors(from);
  const mapped = Object.fromEntries(
    Object.entries(tensors).map(([name, t]) => [name, tensor(map(t.toFloat32Array(), name), t.shape)]),
  );
  await saveTensors(to, mapped, { metadata: metadata ?? {} });
  disposeTensors(tensors);
  disposeTensors(mapped);
}
