//! MP4 output: H.264 from openh264 (built from its bundled source) in a fragmented MP4 written
//! here. Every frame is its own fragment (`moof` + `mdat`) flushed at once, so a run killed
//! at any point leaves a playable prefix; `finish` has nothing left to index.

use super::output::FrameWriter;
use anyhow::{bail, Context, Result};
use fifo_diffusion::pipeline::Frame;
use openh264::encoder::{Encoder, EncoderConfig, FrameRate};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;
use std::fs::File;
use std::io::{BufWriter, Write};

/// Media time units per frame: the timescale is `fps * TICKS`.
const TICKS: u32 = 1000;

pub struct Mp4 {
    out: BufWriter<File>,
    encoder: Encoder,
    width: usize,
    height: usize,
    fps: u32,
    sequence: u32,
    moov_written: bool,
    yuv: YUVBuffer,
}

impl Mp4 {
    pub fn new(file: File, width: usize, height: usize, fps: u32) -> Result<Self> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            bail!("H.264 needs an even frame size, the model makes {width}x{height}; use .y4m or .gif");
        }
        let config = EncoderConfig::new().max_frame_rate(FrameRate::from_hz(fps as f32));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| anyhow::anyhow!("cannot start the H.264 encoder: {e}"))?;
        Ok(Self {
            out: BufWriter::new(file),
            encoder,
            width,
            height,
            fps,
            sequence: 0,
            moov_written: false,
            yuv: YUVBuffer::new(width, height),
        })
    }
}

/// NAL units of an Annex B stream (start codes removed).
fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map_or(stream.len(), |&n| n - 3);
        // A 4-byte start code leaves one zero before the next 3-byte one.
        while e > s && stream[e - 1] == 0 && k + 1 < starts.len() {
            e -= 1;
        }
        if e > s {
            units.push(&stream[s..e]);
        }
    }
    units
}

/// An ISO BMFF box: size, type, body.
fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + body.len());
    b.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A full box: version and flags before the body.
fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    bx(kind, &b)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn be(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

impl Mp4 {
    fn header(&self, sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let (w, h, timescale) = (self.width as u32, self.height as u32, self.fps * TICKS);
        let ftyp = bx(b"ftyp", b"isom\0\0\x02\0isomiso6avc1mp41");
        let mut mvhd = be(&[0, 0, timescale, 0, 0x0001_0000]);
        mvhd.extend_from_slice(&[1, 0, 0, 0]);
        mvhd.extend(be(&[0, 0]));
        mvhd.extend(be(&MATRIX));
        mvhd.extend(be(&[0; 6]));
        mvhd.extend(be(&[2]));
        let mut tkhd = be(&[0, 0, 1, 0, 0, 0, 0, 0, 0]);
        tkhd.extend(be(&MATRIX));
        tkhd.extend(be(&[w << 16, h << 16]));
        let mut mdhd = be(&[0, 0, timescale, 0]);
        mdhd.extend_from_slice(&[0x55, 0xC4, 0, 0]);
        let mut hdlr = be(&[0]);
        hdlr.extend_from_slice(b"vide");
        hdlr.extend(be(&[0, 0, 0]));
        hdlr.extend_from_slice(b"fifo-diffusion\0");
        let vmhd = full(b"vmhd", 0, 1, &[0; 8]);
        let dinf = bx(b"dinf", &full(b"dref", 0, 0, &[&be(&[1])[..], &full(b"url ", 0, 1, &[])].concat()));
        let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(sps);
        avcc.push(1);
        avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(pps);
        let mut avc1 = vec![0; 6];
        avc1.extend_from_slice(&[0, 1]);
        avc1.extend_from_slice(&[0; 16]);
        avc1.extend_from_slice(&(w as u16).to_be_bytes());
        avc1.extend_from_slice(&(h as u16).to_be_bytes());
        avc1.extend(be(&[0x0048_0000, 0x0048_0000, 0]));
        avc1.extend_from_slice(&[0, 1]);
        avc1.extend_from_slice(&[0; 32]);
        avc1.extend_from_slice(&[0, 0x18, 0xFF, 0xFF]);
        avc1.extend(bx(b"avcC", &avcc));
        let stsd = full(b"stsd", 0, 0, &[&be(&[1])[..], &bx(b"avc1", &avc1)].concat());
        let empty = be(&[0]);
        let stbl = bx(
            b"stbl",
            &[
                stsd,
                full(b"stts", 0, 0, &empty),
                full(b"stsc", 0, 0, &empty),
                full(b"stsz", 0, 0, &be(&[0, 0])),
                full(b"stco", 0, 0, &empty),
            ]
            .concat(),
        );
        let minf = bx(b"minf", &[vmhd, dinf, stbl].concat());
        let mdia = bx(b"mdia", &[full(b"mdhd", 0, 0, &mdhd), full(b"hdlr", 0, 0, &hdlr), minf].concat());
        let trak = bx(b"trak", &[full(b"tkhd", 0, 3, &tkhd), mdia].concat());
        let mvex = bx(b"mvex", &full(b"trex", 0, 0, &be(&[1, 1, 0, 0, 0])));
        let moov = bx(b"moov", &[full(b"mvhd", 0, 0, &mvhd), trak, mvex].concat());
        [ftyp, moov].concat()
    }

    /// One fragment holding one sample.
    fn fragment(&mut self, sample: &[u8], key: bool) -> Vec<u8> {
        self.sequence += 1;
        let decode_time = (self.sequence as u64 - 1) * TICKS as u64;
        let flags: u32 = if key { 0x0200_0000 } else { 0x0101_0000 };
        let traf_body = |data_offset: u32| {
            let tfhd = full(b"tfhd", 0, 0x02_0000, &be(&[1]));
            let tfdt = full(b"tfdt", 1, 0, &decode_time.to_be_bytes());
            let trun = full(b"trun", 0, 0x000701, &be(&[1, data_offset, TICKS, sample.len() as u32, flags]));
            bx(b"traf", &[tfhd, tfdt, trun].concat())
        };
        let mfhd = full(b"mfhd", 0, 0, &be(&[self.sequence]));
        let size = bx(b"moof", &[mfhd.clone(), traf_body(0)].concat()).len() as u32;
        let moof = bx(b"moof", &[mfhd, traf_body(size + 8)].concat());
        [moof, bx(b"mdat", sample)].concat()
    }
}

impl FrameWriter for Mp4 {
    fn write(&mut self, frame: &Frame) -> Result<()> {
        self.yuv.read_rgb8(RgbSliceU8::new(&frame.rgb, (frame.width, frame.height)));
        let stream =
            self.encoder.encode(&self.yuv).map_err(|e| anyhow::anyhow!("H.264 encoding failed: {e}"))?;
        let annex_b = stream.to_vec();
        let (mut sps, mut pps, mut sample, mut key) = (None, None, Vec::new(), false);
        for nal in nal_units(&annex_b) {
            match nal[0] & 0x1F {
                7 => sps = Some(nal.to_vec()),
                8 => pps = Some(nal.to_vec()),
                t => {
                    key |= t == 5;
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
            }
        }
        if !self.moov_written {
            let (sps, pps) =
                sps.zip(pps).context("the H.264 encoder gave no SPS/PPS with its first frame")?;
            let header = self.header(&sps, &pps);
            self.out.write_all(&header)?;
            self.moov_written = true;
        }
        if !sample.is_empty() {
            let fragment = self.fragment(&sample, key);
            self.out.write_all(&fragment)?;
            self.out.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
