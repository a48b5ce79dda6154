//! prost's codec, except that a request that does not decode is INVALID_ARGUMENT (the
//! caller's fault, e.g. a predicate nested past prost's recursion limit of 100 messages)
//! rather than tonic-prost's INTERNAL.

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Named by build.rs as the codec of every generated method.
pub struct SegdCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SegdCodec<T, U> {
    fn default() -> Self {
        SegdCodec(std::marker::PhantomData)
    }
}

impl<T, U> Codec for SegdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SegdDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SegdDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

pub struct SegdDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for SegdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed request message: {e}")))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}
