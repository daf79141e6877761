/**
 * The most levels of nesting a JSON input may have (HTTP bodies, --params). Job params need four; a
 * deeper document is refused as it is read, before any code walks it recursively and runs out of stack.
 */
export const MAX_JSON_DEPTH = 32;

/** True when `value` nests arrays and objects deeper than `max` levels; walked without recursion. */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (typeof item !== 'object' || item === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
