//! The instruction set of the virtual servos: how each Protocol 2.0 instruction (PING, READ,
//! WRITE, REG_WRITE/ACTION, FACTORY_RESET, CLEAR and the SYNC/BULK/FAST group transfers) acts
//! on the addressed servos' control tables, and which status packets it answers with.

use std::time::Instant;

use widowx::control_table::{Model, Register, reg};

use super::*;

impl Arm {
    pub(super) fn addressing(&self, index: usize, packet_id: u8) -> Option<Addressing> {
        let servo = &self.units[index].servo;
        if packet_id == BROADCAST_ID {
            Some(Addressing::Broadcast)
        } else if servo.id() == packet_id {
            Some(Addressing::Primary)
        } else if servo.secondary_id() == Some(packet_id) {
            Some(Addressing::Secondary)
        } else {
            None
        }
    }

    /// A single-target instruction for servo `index`.
    pub(super) fn single(
        &mut self,
        index: usize,
        addressing: Addressing,
        packet: &Packet,
        now: Instant,
        replies: &mut Vec<Reply>,
    ) {
        let primary = addressing == Addressing::Primary;
        let params = &packet.params;
        // A servo whose ID a WRITE changes still answers from the ID it was addressed by.
        let reply_id = self.units[index].servo.id();
        let outcome: Option<Result<Vec<u8>, u8>> = match packet.instruction {
            instruction::PING => {
                (addressing != Addressing::Secondary).then(|| Ok(self.ping_params(index)))
            }
            instruction::READ => primary.then(|| self.read_params(index, params)),
            instruction::WRITE => {
                let result = self.write(index, params, addressing, now);
                primary.then_some(result.map(|()| Vec::new()))
            }
            instruction::REG_WRITE => {
                let result = self.reg_write(index, params, addressing);
                primary.then_some(result.map(|()| Vec::new()))
            }
            instruction::ACTION => {
                let result = self.action(index, addressing, now);
                primary.then_some(result.map(|()| Vec::new()))
            }
            instruction::REBOOT => {
                let reply = primary.then(|| Ok(Vec::new()));
                self.push_reply(index, reply_id, reply, packet.instruction, replies);
                self.reboot(index, now);
                return;
            }
            instruction::FACTORY_RESET => {
                let result = self.factory_reset(index, params, addressing, now);
                primary.then_some(result.map(|()| Vec::new()))
            }
            instruction::CLEAR => primary.then(|| self.clear(index)),
            _ => primary.then_some(Err(error::INSTRUCTION)),
        };
        self.push_reply(index, reply_id, outcome, packet.instruction, replies);
    }

    /// Queues the reply of servo `index` (sent as `reply_id`) if its Status_Return_Level,
    /// as it stands after the instruction, allows one.
    pub(super) fn push_reply(
        &self,
        index: usize,
        reply_id: u8,
        outcome: Option<Result<Vec<u8>, u8>>,
        instruction: u8,
        replies: &mut Vec<Reply>,
    ) {
        let Some(outcome) = outcome else { return };
        let servo = &self.units[index].servo;
        let level = servo.status_return_level();
        let due = match instruction {
            instruction::PING => true,
            instruction::READ
            | instruction::SYNC_READ
            | instruction::BULK_READ
            | instruction::FAST_SYNC_READ => level >= 1,
            _ => level >= 2,
        };
        if !due {
            return;
        }
        let (error_number, params) = match outcome {
            Ok(params) => (0, params),
            Err(number) => (number, Vec::new()),
        };
        replies.push(Reply {
            bytes: encode_status(reply_id, error_number | servo.alert_bits(), &params),
            return_delay_us: return_delay_us(servo),
        });
    }

    pub(super) fn ping_params(&self, index: usize) -> Vec<u8> {
        let servo = &self.units[index].servo;
        let mut params = (servo.get(&reg::MODEL_NUMBER) as u16)
            .to_le_bytes()
            .to_vec();
        params.push(servo.get(&reg::FIRMWARE_VERSION) as u8);
        params
    }

    pub(super) fn read_params(&self, index: usize, params: &[u8]) -> Result<Vec<u8>, u8> {
        let [a0, a1, l0, l1] = params[..] else {
            return Err(error::DATA_LENGTH);
        };
        self.units[index]
            .servo
            .read(u16::from_le_bytes([a0, a1]), u16::from_le_bytes([l0, l1]))
    }

    /// WRITE: address (2) + data; the servo refuses or applies all of it.
    pub(super) fn write(
        &mut self,
        index: usize,
        params: &[u8],
        addressing: Addressing,
        now: Instant,
    ) -> Result<(), u8> {
        let (address, data) = split_address(params)?;
        self.write_data(index, address, data, addressing, now)
    }

    pub(super) fn write_data(
        &mut self,
        index: usize,
        address: u16,
        data: &[u8],
        addressing: Addressing,
        now: Instant,
    ) -> Result<(), u8> {
        let via_secondary = addressing == Addressing::Secondary;
        match self.units[index]
            .servo
            .check_write(address, data, via_secondary)
        {
            Ok(changes) => {
                self.apply_changes(index, &changes, now);
                Ok(())
            }
            // Refused silently: nothing written and, through a secondary ID, no reply anyway.
            Err(WriteRefusal::Silent) => Ok(()),
            Err(WriteRefusal::Error(number)) => Err(number),
        }
    }

    pub(super) fn reg_write(
        &mut self,
        index: usize,
        params: &[u8],
        addressing: Addressing,
    ) -> Result<(), u8> {
        let (address, data) = split_address(params)?;
        let servo = &mut self.units[index].servo;
        match servo.check_write(address, data, addressing == Addressing::Secondary) {
            Ok(_) => {
                servo.registered = Some((address, data.to_vec()));
                servo.set(&registered_instruction(), 1);
                Ok(())
            }
            Err(WriteRefusal::Silent) => Ok(()),
            Err(WriteRefusal::Error(number)) => Err(number),
        }
    }

    pub(super) fn action(
        &mut self,
        index: usize,
        addressing: Addressing,
        now: Instant,
    ) -> Result<(), u8> {
        let servo = &mut self.units[index].servo;
        let Some((address, data)) = servo.registered.take() else {
            return Err(error::INSTRUCTION);
        };
        servo.set(&registered_instruction(), 0);
        self.write_data(index, address, &data, addressing, now)
    }

    pub(super) fn factory_reset(
        &mut self,
        index: usize,
        params: &[u8],
        addressing: Addressing,
        now: Instant,
    ) -> Result<(), u8> {
        let &[option] = params else {
            return Err(error::DATA_LENGTH);
        };
        if addressing == Addressing::Secondary
            || (addressing == Addressing::Broadcast && option == 0xFF)
        {
            return Ok(()); // EEPROM is out of reach through a secondary ID; broadcast reset-all is ignored
        }
        let (keep_id, keep_baud) = match option {
            0xFF => (false, false),
            0x01 => (true, false),
            0x02 => (true, true),
            _ => return Err(error::DATA_RANGE),
        };
        if self.units[index].servo.torque_on() {
            return Err(error::ACCESS);
        }
        self.units[index].servo.factory_reset(keep_id, keep_baud);
        self.refresh(now);
        self.hold_goal_at_present(index);
        Ok(())
    }

    pub(super) fn clear(&self, index: usize) -> Result<Vec<u8>, u8> {
        if self.units[index].servo.get(&reg::MOVING) != 0 {
            Err(error::RESULT_FAIL)
        } else {
            Ok(Vec::new())
        }
    }

    /// SYNC_READ, BULK_READ and FAST_SYNC_READ (always on the broadcast ID).
    pub(super) fn group_read(
        &mut self,
        packet: &Packet,
        listening: &[usize],
        replies: &mut Vec<Reply>,
    ) {
        let requests: Vec<(u8, u16, u16)> = match packet.instruction {
            instruction::BULK_READ => bulk_read_requests(&packet.params),
            _ => sync_read_requests(&packet.params),
        };
        let find = |id: u8| {
            listening
                .iter()
                .copied()
                .find(|&i| self.units[i].servo.id() == id)
        };
        if packet.instruction == instruction::FAST_SYNC_READ {
            self.fast_sync_read(&requests, find, replies);
            return;
        }
        for (id, address, len) in requests {
            if let Some(index) = find(id) {
                let outcome = self.units[index].servo.read(address, len);
                self.push_reply(index, id, Some(outcome), packet.instruction, replies);
            }
        }
    }

    pub(super) fn fast_sync_read(
        &self,
        requests: &[(u8, u16, u16)],
        find: impl Fn(u8) -> Option<usize>,
        replies: &mut Vec<Reply>,
    ) {
        let Some(&(_, address, len)) = requests.first() else {
            return;
        };
        let Some(first) = find(requests[0].0) else {
            return;
        };
        if self.units[first].servo.status_return_level() < 1 {
            return;
        }
        let mut blocks = Vec::with_capacity(requests.len());
        for &(id, _, _) in requests {
            // The chain stops at the first servo that does not answer.
            let Some(index) = find(id) else { break };
            let servo = &self.units[index].servo;
            let (error_number, data) = match servo.read(address, len) {
                Ok(data) => (0, data),
                Err(number) => (number, vec![0; usize::from(len)]),
            };
            blocks.push(FastSyncBlock {
                error: error_number | servo.alert_bits(),
                id,
                data,
            });
        }
        replies.push(Reply {
            bytes: encode_fast_sync_status(&blocks, requests.len(), usize::from(len)),
            return_delay_us: return_delay_us(&self.units[first].servo),
        });
    }

    /// SYNC_WRITE and BULK_WRITE: every listed servo (by ID or secondary ID) applies its part.
    pub(super) fn group_write(&mut self, packet: &Packet, listening: &[usize], now: Instant) {
        let writes = match packet.instruction {
            instruction::BULK_WRITE => bulk_write_parts(&packet.params),
            _ => sync_write_parts(&packet.params),
        };
        for (id, address, data) in writes {
            for &index in listening {
                let addressing = match self.addressing(index, id) {
                    Some(Addressing::Broadcast) | None => continue,
                    Some(addressing) => addressing,
                };
                let _ = self.write_data(index, address, &data, addressing, now);
            }
        }
    }
}

fn registered_instruction() -> Register {
    // Present on both models; read-only, so it is not among the driver's named registers.
    Model::Xm430W350
        .register("Registered_Instruction")
        .copied()
        .unwrap_or(reg::MOVING)
}

fn split_address(params: &[u8]) -> Result<(u16, &[u8]), u8> {
    match params {
        [a0, a1, data @ ..] if !data.is_empty() => Ok((u16::from_le_bytes([*a0, *a1]), data)),
        _ => Err(error::DATA_LENGTH),
    }
}

/// `(id, address, length)` for each ID of a SYNC_READ / FAST_SYNC_READ.
fn sync_read_requests(params: &[u8]) -> Vec<(u8, u16, u16)> {
    let [a0, a1, l0, l1, ids @ ..] = params else {
        return Vec::new();
    };
    let (address, len) = (
        u16::from_le_bytes([*a0, *a1]),
        u16::from_le_bytes([*l0, *l1]),
    );
    ids.iter().map(|&id| (id, address, len)).collect()
}

fn bulk_read_requests(params: &[u8]) -> Vec<(u8, u16, u16)> {
    if !params.len().is_multiple_of(5) {
        return Vec::new();
    }
    params
        .chunks_exact(5)
        .map(|c| {
            (
                c[0],
                u16::from_le_bytes([c[1], c[2]]),
                u16::from_le_bytes([c[3], c[4]]),
            )
        })
        .collect()
}

fn sync_write_parts(params: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    let [a0, a1, l0, l1, rest @ ..] = params else {
        return Vec::new();
    };
    let (address, len) = (
        u16::from_le_bytes([*a0, *a1]),
        usize::from(u16::from_le_bytes([*l0, *l1])),
    );
    if len == 0 || rest.len() % (len + 1) != 0 {
        return Vec::new(); // malformed: a real servo ignores the packet
    }
    rest.chunks_exact(len + 1)
        .map(|c| (c[0], address, c[1..].to_vec()))
        .collect()
}

fn bulk_write_parts(params: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    let mut parts = Vec::new();
    let mut rest = params;
    while !rest.is_empty() {
        let [id, a0, a1, l0, l1, tail @ ..] = rest else {
            return Vec::new();
        };
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        if len == 0 || tail.len() < len {
            return Vec::new();
        }
        parts.push((*id, u16::from_le_bytes([*a0, *a1]), tail[..len].to_vec()));
        rest = &tail[len..];
    }
    parts
}
