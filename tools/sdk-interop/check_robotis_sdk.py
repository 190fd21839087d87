"""Interop check: the official ROBOTIS Dynamixel SDK (Python) drives `bridge-sim serve`.

The virtual arm must be indistinguishable from the real one to any Dynamixel client, not only to
our own driver. Usage: python check_robotis_sdk.py PATH/TO/bridge-sim
Exits non-zero, naming the check, when the SDK sees anything a real WidowX would not answer.
"""

import subprocess
import sys
import time

from dynamixel_sdk import COMM_SUCCESS, GroupSyncRead, GroupSyncWrite, PacketHandler, PortHandler

MODELS = {1: 1020, 2: 1020, 3: 1020, 4: 1020, 5: 1020, 6: 1020, 7: 1020, 8: 1060, 9: 1060}
MASTERS = [1, 2, 4, 6, 7, 8, 9]
ADDR_OPERATING_MODE, ADDR_TORQUE_ENABLE = 11, 64
ADDR_GOAL_POSITION, ADDR_PRESENT_POSITION = 116, 132
ACCESS_ERROR = 7


def check(condition, what):
    if not condition:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def main():
    sim = subprocess.Popen([sys.argv[1], "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        path = sim.stdout.readline().strip()
        port = PortHandler(path)
        check(port.openPort() and port.setBaudRate(1_000_000), f"open {path} at 1 Mbps")
        packets = PacketHandler(2.0)
        for servo_id, model in MODELS.items():
            number, result, error = packets.ping(port, servo_id)
            check(result == COMM_SUCCESS and error == 0 and number == model, f"ping {servo_id} -> model {model}")

        reader = GroupSyncRead(port, packets, ADDR_PRESENT_POSITION, 4)
        for servo_id in MASTERS:
            reader.addParam(servo_id)
        check(reader.txRxPacket() == COMM_SUCCESS, "sync read of Present_Position over the 7 masters")
        positions = {i: reader.getData(i, ADDR_PRESENT_POSITION, 4) for i in MASTERS}
        check(all(0 <= p <= 4095 for p in positions.values()), f"positions in range {positions}")

        result, error = packets.write1ByteTxRx(port, 6, ADDR_TORQUE_ENABLE, 1)
        check(result == COMM_SUCCESS and error == 0, "torque on, servo 6")
        result, error = packets.write1ByteTxRx(port, 6, ADDR_OPERATING_MODE, 3)
        check(error == ACCESS_ERROR, "EEPROM write with torque on is refused with an access error")

        writer = GroupSyncWrite(port, packets, ADDR_GOAL_POSITION, 4)
        goal = positions[6] + 200
        writer.addParam(6, list(goal.to_bytes(4, "little")))
        check(writer.txPacket() == COMM_SUCCESS, "sync write of a goal to servo 6")
        moved = False
        deadline = time.monotonic() + 3.0
        while not moved and time.monotonic() < deadline:
            present, result, _ = packets.read4ByteTxRx(port, 6, ADDR_PRESENT_POSITION)
            moved = result == COMM_SUCCESS and abs(present - goal) <= 2
            time.sleep(0.01)
        check(moved, f"servo 6 reaches goal {goal}")
        port.closePort()
    finally:
        sim.stdin.close()
        sim.wait(timeout=10)
    print("ROBOTIS SDK interop: all checks passed")


if __name__ == "__main__":
    main()
