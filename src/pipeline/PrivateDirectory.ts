/**
 * The rule for the directories only root may control (the run lock's and the revocation state's): a real directory
 * (not a link), owned by the running user, writable by nobody else. Anything less lets an account plant a lock, a
 * record or a link there. Pure: takes what lstat said.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export interface DirectoryStat {
  readonly isSymbolicLink: boolean
  readonly isDirectory: boolean
  readonly uid: number
  readonly mode: number
}

/** Why `st` is not a private directory of `uid`, or `undefined` when it is. @since 0.1.0 */
export const privateDirectoryProblem = (st: DirectoryStat, uid: number): string | undefined =>
  st.isSymbolicLink
    ? "it is a symbolic link"
    : !st.isDirectory
    ? "it is not a directory"
    : st.uid !== uid
    ? `it is owned by uid ${st.uid}, not by uid ${uid}`
    : (st.mode & 0o022) !== 0
    ? `it is writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")})`
    : undefined

/** lstat's answer in the shape above. @since 0.1.0 */
export const directoryStat = (st: {
  isSymbolicLink(): boolean
  isDirectory(): boolean
  readonly uid: number
  readonly mode: number
}): DirectoryStat => ({
  isSymbolicLink: st.isSymbolicLink(),
  isDirectory: st.isDirectory(),
  uid: st.uid,
  mode: st.mode
})
