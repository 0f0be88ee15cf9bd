/** VTAB-1k's three groups and their tasks (the NOAH layout's names, lib/data/splits.ts), in the paper's order. */
export const VTAB_GROUPS: readonly { name: 'Natural' | 'Specialized' | 'Structured'; tasks: readonly string[] }[] = [
  {
    name: 'Natural',
    tasks: ['cifar', 'caltech101', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn', 'sun397'],
  },
  { name: 'Specialized', tasks: ['patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy'] },
  {
    name: 'Structured',
    tasks: [
      'clevr_count',
      'clevr_dist',
      'dmlab',
      'kitti',
      'dsprites_loc',
      'dsprites_ori',
      'smallnorb_azi',
      'smallnorb_ele',
    ],
  },
];

/** The group of a VTAB-1k task. */
export function vtabGroupOf(task: string): string | undefined {
  return VTAB_GROUPS.find((group) => group.tasks.includes(task))?.name;
}
