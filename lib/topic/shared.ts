/**
 * Shared subscriptions (MQTT 5.0 section 4.8.2): `$share/{ShareName}/{filter}`. All members of
 * one group hold one trie entry, the group itself, so a message reaches each group once; the
 * group then picks one member, round robin, preferring members that are online and have room.
 */

/** A member: anything with the subscriber's own options. */
export class SharedGroup<M> {
  readonly members: M[] = [];
  private next = 0;

  constructor(
    readonly shareName: string,
    readonly filter: string,
  ) {}

  /** Adds a member, or replaces the one `same` finds. */
  join(member: M, same: (m: M) => boolean): void {
    const i = this.members.findIndex(same);
    if (i >= 0) this.members[i] = member;
    else this.members.push(member);
  }

  /** Removes the member `same` finds; true when the group is left empty. */
  leave(same: (m: M) => boolean): boolean {
    const i = this.members.findIndex(same);
    if (i >= 0) {
      this.members.splice(i, 1);
      if (this.next > i) this.next--;
    }
    return this.members.length === 0;
  }

  /**
   * The member to deliver the next message to: the next one in turn that `ready` accepts, or, when
   * none is ready, the next one in turn (its queue decides). Undefined for an empty group.
   */
  pick(ready: (m: M) => boolean): M | undefined {
    const n = this.members.length;
    if (n === 0) return undefined;
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n;
      if (ready(this.members[i]!)) {
        this.next = (i + 1) % n;
        return this.members[i];
      }
    }
    const i = this.next % n;
    this.next = (i + 1) % n;
    return this.members[i];
  }
}
