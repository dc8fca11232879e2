// Inputs channel (type 3): keys as set-1 scancodes, absolute (client mode) or relative mouse.
import { Channel, CHANNEL } from "../channel.js";
import { Writer } from "../wire.js";
import { packedKey } from "../input/keymap.js";

const M = { INIT: 101, KEY_MODIFIERS: 102, MOUSE_MOTION_ACK: 111 };
const MSGC = { KEY_DOWN: 101, KEY_UP: 102, MOUSE_MOTION: 111, MOUSE_POSITION: 112, MOUSE_PRESS: 113,
  MOUSE_RELEASE: 114 };
const MOTION_ACK_BUNCH = 4;

export class InputsChannel extends Channel {
  constructor(client) {
    super(client, CHANNEL.INPUTS, 0, 0);
    this.unacked = 0;
    this.pendingMotion = null;
    this.buttons = 0;
    this.pressed = new Set();
  }

  handle(type) {
    if (type === M.MOUSE_MOTION_ACK) {
      this.unacked = Math.max(0, this.unacked - MOTION_ACK_BUNCH);
      if (this.pendingMotion) {
        const m = this.pendingMotion;
        this.pendingMotion = null;
        m();
      }
    }
  }

  key(scancode, down) {
    if (down) this.pressed.add(scancode);
    else if (!this.pressed.delete(scancode)) return; // never send an UP for a key we did not press
    this.send(down ? MSGC.KEY_DOWN : MSGC.KEY_UP, new Writer(4).u32(packedKey(scancode, down)).done());
  }

  releaseAll() {
    for (const sc of [...this.pressed]) this.key(sc, false);
  }

  // Motion messages need credit: at most 2 bunches unacknowledged; the latest position waits.
  _motion(send) {
    if (this.unacked >= 2 * MOTION_ACK_BUNCH) { this.pendingMotion = send; return; }
    this.unacked++;
    send();
  }

  position(x, y) {
    this._motion(() => {
      const w = new Writer(11);
      w.u32(Math.max(0, x)).u32(Math.max(0, y)).u16(this.buttons).u8(0);
      this.send(MSGC.MOUSE_POSITION, w.done());
    });
  }

  motion(dx, dy) {
    this._motion(() => this.send(MSGC.MOUSE_MOTION, new Writer(10).i32(dx).i32(dy).u16(this.buttons).done()));
  }

  // button: 1 left, 2 middle, 3 right, 4 wheel up, 5 wheel down.
  button(button, down) {
    // A position held back for lack of credit goes first, or the click lands at the old position.
    if (this.pendingMotion) {
      const m = this.pendingMotion;
      this.pendingMotion = null;
      this.unacked++;
      m();
    }
    const bit = button <= 3 ? [0, 1, 2, 4][button] : 0;
    if (down) this.buttons |= bit; else this.buttons &= ~bit;
    const w = new Writer(3).u8(button).u16(this.buttons);
    this.send(down ? MSGC.MOUSE_PRESS : MSGC.MOUSE_RELEASE, w.done());
  }

  releaseButtons() {
    for (const b of [1, 2, 3]) if (this.buttons & [0, 1, 2, 4][b]) this.button(b, false);
  }
}
