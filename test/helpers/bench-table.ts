/** The rows of a markdown table a bench script printed, by their first cell (the header row left out). */
export function tableRows(stdout: string): Map<string, string[]> {
  return new Map(stdout.split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| config') && !l.startsWith('|---'))
    .map((l) => {
      const cells = l.split('|').map((c) => c.trim())
      return [cells[1] as string, cells] as const
    }))
}
