use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::frame::{
    decode_frame, encode_frame, Frame, HeaderBlockCompressor, HeaderBlockDecompressor, HeaderList,
    FLAG_FIN, SETTINGS_INITIAL_WINDOW_SIZE,
};
use super::session::{Role, SpdySession};

#[tokio::test]
async fn client_and_server_sessions_exchange_data_and_fin() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let client = SpdySession::new(client_io, Role::Client);
    let mut server = SpdySession::new(server_io, Role::Server);

    let server_task = tokio::spawn(async move {
        let mut stream = server.accept().await.expect("a stream");
        assert_eq!(stream.headers().get("streamtype"), Some("stdin"));
        let mut received = Vec::new();
        while let Some(chunk) = stream.recv().await {
            received.extend_from_slice(&chunk);
        }
        stream.send(&received).await.unwrap();
        stream.finish().await.unwrap();
        server
    });

    let mut stream = client
        .open(HeaderList::from_pairs([("streamType", "stdin")]))
        .await
        .unwrap();
    assert_eq!(stream.id(), 1);
    stream.send(b"hello ").await.unwrap();
    stream.send(b"world").await.unwrap();
    stream.finish().await.unwrap();
    let mut echoed = Vec::new();
    while let Some(chunk) = stream.recv().await {
        echoed.extend_from_slice(&chunk);
    }
    assert_eq!(echoed, b"hello world");
    let _server = server_task.await.unwrap();
    // The next stream takes the next odd id.
    let second = client
        .open(HeaderList::from_pairs([("streamtype", "stdout")]))
        .await
        .unwrap();
    assert_eq!(second.id(), 3);
}

#[tokio::test]
async fn large_transfers_work_with_a_peer_that_grants_window() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let client = SpdySession::new(client_io, Role::Client);
    let mut server = SpdySession::new(server_io, Role::Server);
    let payload: Vec<u8> = (0..1_000_000u32).map(|index| (index % 251) as u8).collect();
    let expected = payload.clone();
    tokio::spawn(async move {
        let stream = server.accept().await.unwrap();
        stream.send(&payload).await.unwrap();
        stream.finish().await.unwrap();
        // Keep the session alive until the client is done reading.
        let _ = server.accept().await;
    });
    let mut stream = client
        .open(HeaderList::from_pairs([("streamtype", "stdout")]))
        .await
        .unwrap();
    let mut received = Vec::new();
    while let Some(chunk) = stream.recv().await {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), expected.len());
    assert!(received == expected);
}

#[tokio::test]
async fn reset_by_peer_ends_the_stream_and_fails_sends() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let client = SpdySession::new(client_io, Role::Client);
    let mut server = SpdySession::new(server_io, Role::Server);
    let mut client_stream = client
        .open(HeaderList::from_pairs([("streamtype", "data")]))
        .await
        .unwrap();
    let server_stream = server.accept().await.unwrap();
    server_stream.reset(5).await;
    assert_eq!(client_stream.recv().await, None);
    let (receiver, sender) = client_stream.into_parts();
    assert_eq!(receiver.reset_status(), Some(5));
    assert!(sender.send(b"late").await.is_err());
}

/// Drives the server session with hand-written frames to check the wire
/// behaviour a Kubernetes client relies on and that flow control is honoured
/// once the peer announces a window.
#[tokio::test]
async fn server_replies_echoes_pings_and_honours_announced_window() {
    let (mut raw_client, server_io) = tokio::io::duplex(1 << 16);
    let mut server = SpdySession::new(server_io, Role::Server);
    let mut compressor = HeaderBlockCompressor::new();
    let mut decompressor = HeaderBlockDecompressor::new();
    let mut buffer = BytesMut::new();

    let send = |frame: Frame, compressor: &mut HeaderBlockCompressor| {
        encode_frame(&frame, compressor).unwrap()
    };
    raw_client
        .write_all(&send(
            Frame::Settings {
                flags: 0,
                entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 10)],
            },
            &mut compressor,
        ))
        .await
        .unwrap();
    raw_client
        .write_all(&send(
            Frame::SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 0,
                flags: 0,
                headers: HeaderList::from_pairs([("streamtype", "stdout")]),
            },
            &mut compressor,
        ))
        .await
        .unwrap();
    raw_client
        .write_all(&send(Frame::Ping { id: 1 }, &mut compressor))
        .await
        .unwrap();

    let server_stream = server.accept().await.unwrap();
    let sender_task = tokio::spawn(async move {
        server_stream.send(&[7u8; 100]).await.unwrap();
        server_stream.finish().await.unwrap();
        server
    });

    async fn next_frame(
        raw_client: &mut tokio::io::DuplexStream,
        buffer: &mut BytesMut,
        decompressor: &mut HeaderBlockDecompressor,
    ) -> Option<Frame> {
        loop {
            if let Some(frame) = decode_frame(buffer, decompressor).unwrap() {
                return Some(frame);
            }
            match tokio::time::timeout(Duration::from_millis(300), raw_client.read_buf(buffer))
                .await
            {
                Ok(Ok(read)) if read > 0 => {}
                _ => return None,
            }
        }
    }

    assert_eq!(
        next_frame(&mut raw_client, &mut buffer, &mut decompressor).await,
        Some(Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: HeaderList::new()
        })
    );
    assert_eq!(
        next_frame(&mut raw_client, &mut buffer, &mut decompressor).await,
        Some(Frame::Ping { id: 1 })
    );
    assert_eq!(
        next_frame(&mut raw_client, &mut buffer, &mut decompressor).await,
        Some(Frame::Data {
            stream_id: 1,
            flags: 0,
            payload: Bytes::from(vec![7u8; 10])
        })
    );
    // The 10-byte window is used up: nothing more until the client grants.
    assert_eq!(
        next_frame(&mut raw_client, &mut buffer, &mut decompressor).await,
        None
    );
    raw_client
        .write_all(&send(
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 90,
            },
            &mut compressor,
        ))
        .await
        .unwrap();
    let mut rest = Vec::new();
    loop {
        match next_frame(&mut raw_client, &mut buffer, &mut decompressor).await {
            Some(Frame::Data { flags, payload, .. }) => {
                rest.extend_from_slice(&payload);
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(rest, vec![7u8; 90]);
    let _server = sender_task.await.unwrap();
}
